#!/usr/bin/env bash
# Dagster on Azure Container Apps (docs/deployment.md, "2b. Container Apps"), after foundation.sh:
# the webserver (internal ingress), the daemon, and the gateway (external ingress) as apps of one
# environment; each run is a Container Apps Job the daemon's AcaRunLauncher creates
# (instance/production/dagster.yaml, which the image carries as its default instance). Run from the
# project root:
#   PREFIX=mnistprod TENANT_ID=<tenant> ADF_PRINCIPAL_ID=<factory identity object id> bash deploy/azure/container-apps.sh
set -euo pipefail
source deploy/azure/settings.sh
: "${TENANT_ID:?}" "${ADF_PRINCIPAL_ID:?}"
: "${GATEWAY_AUDIENCE:=api://dagster-gateway}"

SUBNET_ID=$(az network vnet subnet show --resource-group "$RG" --vnet-name "$VNET" --name compute --query id --output tsv)
IDENTITY_ID=$(az identity show --resource-group "$RG" --name "$IDENTITY" --query id --output tsv)
IDENTITY_PRINCIPAL=$(az identity show --resource-group "$RG" --name "$IDENTITY" --query principalId --output tsv)
CLIENT_ID=$(az identity show --resource-group "$RG" --name "$IDENTITY" --query clientId --output tsv)
RG_ID=$(az group show --name "$RG" --query id --output tsv)
PG_SECRET_URI=$(az keyvault secret show --vault-name "$KEYVAULT" --name dagster-pg-password --query id --output tsv)
PG_SECRET_URI=${PG_SECRET_URI%/*}   # without the version: the apps follow rotations

az containerapp env create --name "$ACA_ENV" --resource-group "$RG" --location "$LOCATION" \
  --infrastructure-subnet-resource-id "$SUBNET_ID"
ENV_ID=$(az containerapp env show --name "$ACA_ENV" --resource-group "$RG" --query id --output tsv)

# The launcher creates, starts and deletes Container Apps Jobs in the resource group, with the identity.
az role assignment create --assignee-object-id "$IDENTITY_PRINCIPAL" --assignee-principal-type ServicePrincipal \
  --role Contributor --scope "$RG_ID"
az role assignment create --assignee-object-id "$IDENTITY_PRINCIPAL" --assignee-principal-type ServicePrincipal \
  --role "Managed Identity Operator" --scope "$IDENTITY_ID"

# What instance/production/dagster.yaml and the code location read (docs/configuration.md).
SETTINGS=(
  "DAGSTER_PG_HOST=$PG_SERVER.postgres.database.azure.com" DAGSTER_PG_DB=dagster DAGSTER_PG_USER=dagster
  DAGSTER_PG_PASSWORD=secretref:pg-password PGSSLMODE=require
  "DAGSTER_LOGS_STORAGE_ACCOUNT=$STORAGE" DAGSTER_LOGS_CONTAINER=dagster-logs
  "AZURE_SUBSCRIPTION_ID=$(az account show --query id --output tsv)" "DAGSTER_ACA_RESOURCE_GROUP=$RG"
  "DAGSTER_ACA_REGION=$LOCATION" "DAGSTER_ACA_ENVIRONMENT_ID=$ENV_ID" "DAGSTER_ACA_IDENTITY_ID=$IDENTITY_ID"
  "AZURE_CLIENT_ID=$CLIENT_ID" "DAGSTER_CURRENT_IMAGE=$IMAGE"
  MNIST_STORAGE=azure_blob "AZURE_STORAGE_ACCOUNT_URL=https://$STORAGE.blob.core.windows.net" AZURE_STORAGE_CONTAINER=mnist
  MNIST_SENSOR_MODE=events "AZURE_STORAGE_QUEUE_URL=https://$STORAGE.queue.core.windows.net"
)

az containerapp create --name dagster-webserver --resource-group "$RG" --environment "$ACA_ENV" \
  --image "$IMAGE" --args webserver --registry-server "$ACR.azurecr.io" --registry-identity "$IDENTITY_ID" \
  --user-assigned "$IDENTITY_ID" --secrets "pg-password=keyvaultref:$PG_SECRET_URI,identityref:$IDENTITY_ID" \
  --env-vars "${SETTINGS[@]}" --ingress internal --target-port 3000 \
  --min-replicas 1 --max-replicas 1 --cpu 1 --memory 2Gi
az containerapp create --name dagster-daemon --resource-group "$RG" --environment "$ACA_ENV" \
  --image "$IMAGE" --args daemon --registry-server "$ACR.azurecr.io" --registry-identity "$IDENTITY_ID" \
  --user-assigned "$IDENTITY_ID" --secrets "pg-password=keyvaultref:$PG_SECRET_URI,identityref:$IDENTITY_ID" \
  --env-vars "${SETTINGS[@]}" --min-replicas 1 --max-replicas 1 --cpu 1 --memory 2Gi
az containerapp create --name dagster-gateway --resource-group "$RG" --environment "$ACA_ENV" \
  --image "$IMAGE" --args gateway --registry-server "$ACR.azurecr.io" --registry-identity "$IDENTITY_ID" \
  --env-vars MNIST_GATEWAY_UPSTREAM=http://dagster-webserver/graphql "MNIST_GATEWAY_TENANT_ID=$TENANT_ID" \
  "MNIST_GATEWAY_AUDIENCE=$GATEWAY_AUDIENCE" \
  "MNIST_GATEWAY_IDENTITIES=[{\"name\": \"adf-prod\", \"object_id\": \"$ADF_PRINCIPAL_ID\", \"jobs\": [\"train_model\", \"score_batch\"]}]" \
  --ingress external --target-port 8080 --transport http --min-replicas 1 --max-replicas 3 --cpu 0.5 --memory 1Gi
echo "gateway: https://$(az containerapp show --name dagster-gateway --resource-group "$RG" \
  --query properties.configuration.ingress.fqdn --output tsv)/graphql"
