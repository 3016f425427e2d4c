"""Authenticating gateway in front of dagster-webserver, for Azure Data Factory (ADF) Web activities.

Open-source dagster-webserver has no authentication: whoever reaches it can launch, cancel or delete
runs and wipe assets. This Starlette app is the only thing ADF reaches. It serves `POST /graphql` and
`GET /healthz` and nothing else, and for each request:

1. authenticates the caller (`auth`): an Entra ID bearer token (as a managed identity sends it: RS256
   signed with a key from the tenant's JWKS, issuer of the tenant in its v1 or v2 form, one of the
   configured audiences, exp/nbf/iat within a minute's leeway, and an `oid` / `azp`-`appid` listed in the
   identity policy), or in local static-token mode a shared secret compared in constant time -> 401
   otherwise;
2. authorizes the GraphQL request (`policy`, with the allowed request shapes in `graphql_shapes`): launch
   an allowlisted job, add a partition of such a job, read a run's status and its failure events;
   nothing else -> 400/403 otherwise, and nothing is sent upstream;
3. forwards the canonical form of the allowed request to the internal webserver (`app`), at most
   `max_launches` launches at once. Idempotency is not the gateway's: the caller's tags pass through,
   and the instance's run coordinator (instance_plugins/run_coordinator.py) starts at most one run per
   `adf/pipeline_run_id`, with or without the gateway in front;
4. logs one structured line per decision (identity, operation, job, decision, reason, upstream status,
   latency) and never the token or the Authorization header.

Run it with `python -m adf_bridge.gateway` (or `./run gateway`). Its configuration is the
`MNIST_GATEWAY_*` variables (`settings`); what it knows about the jobs comes from the jobs manifest
`adf/jobs.json` written by the template generator, so it never loads the code location.
"""
