#!/bin/sh
# The image's roles: `docker run IMAGE <role>`, or any command (the run launchers start run workers
# with `dagster api execute_run ...`; the Helm chart gives the code server its own arguments).
#   webserver    dagster-webserver on $DAGSTER_WEBSERVER_PORT (3000), workspace $DAGSTER_WORKSPACE
#   daemon       dagster-daemon (sensors, the run queue, run monitoring)
#   code-server  the code location's gRPC server on $DAGSTER_CODE_SERVER_PORT (3030)
#   gateway      the ADF gateway on $MNIST_GATEWAY_PORT (8080), MNIST_GATEWAY_* settings (docs/adf.md)
#   run-worker   `dagster api execute_run` with the launcher's arguments
set -eu
workspace="${DAGSTER_WORKSPACE:-/app/workspace.yaml}"
role="${1:-webserver}"
[ "$#" -gt 0 ] && shift
case "$role" in
  webserver)
    exec dagster-webserver -h 0.0.0.0 -p "${DAGSTER_WEBSERVER_PORT:-3000}" -w "$workspace" "$@" ;;
  daemon)
    exec dagster-daemon run -w "$workspace" "$@" ;;
  code-server)
    exec dagster code-server start -h 0.0.0.0 -p "${DAGSTER_CODE_SERVER_PORT:-3030}" \
      -m orchestration.definitions --location-name mnist "$@" ;;
  gateway)
    export MNIST_GATEWAY_HOST="${MNIST_GATEWAY_HOST:-0.0.0.0}"
    exec python -m adf_bridge.gateway "$@" ;;
  run-worker)
    exec dagster api execute_run "$@" ;;
  *)
    exec "$role" "$@" ;;
esac
