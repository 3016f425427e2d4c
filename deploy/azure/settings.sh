# The names every script in deploy/azure/ uses: source it (after exporting your own values, which
# win) from the project root, e.g. `PREFIX=mnistprod LOCATION=westeurope source deploy/azure/settings.sh`.
# Storage account, registry and vault names must be globally unique: PREFIX makes them so.
: "${PREFIX:?set PREFIX, a short lowercase prefix (letters and digits) for globally unique names}"
: "${LOCATION:=westeurope}"
: "${RG:=rg-${PREFIX}-dagster}"
: "${VNET:=vnet-${PREFIX}-dagster}"
: "${STORAGE:=${PREFIX}data}"          # data (container mnist), compute logs (dagster-logs), event queues
: "${ACR:=${PREFIX}acr}"
: "${KEYVAULT:=kv-${PREFIX}-dagster}"
: "${PG_SERVER:=pg-${PREFIX}-dagster}"
: "${IDENTITY:=id-dagster}"            # the one identity of the webserver, daemon, code server and runs
: "${IMAGE_TAG:=$(git rev-parse --short=12 HEAD)}"
: "${IMAGE:=${ACR}.azurecr.io/mnist-dagster:${IMAGE_TAG}}"
: "${AKS:=aks-${PREFIX}-dagster}"
: "${ACA_ENV:=cae-${PREFIX}-dagster}"
export PREFIX LOCATION RG VNET STORAGE ACR KEYVAULT PG_SERVER IDENTITY IMAGE_TAG IMAGE AKS ACA_ENV
