#!/usr/bin/env bash
# The Azure side both platforms share (docs/deployment.md, "1. The foundation"): network, storage
# (data, compute logs, the event queues), Event Grid subscriptions from blob creations to the queues,
# PostgreSQL, Key Vault, the managed identity and its role assignments, the registry and the image.
# Idempotent where az is (create on an existing resource updates it). Run from the project root:
#   PREFIX=mnistprod bash deploy/azure/foundation.sh
set -euo pipefail
source deploy/azure/settings.sh

az group create --name "$RG" --location "$LOCATION"

# Network: one subnet for the compute platform (AKS nodes or the Container Apps environment), one
# delegated to PostgreSQL, which gets no public address.
az network vnet create --resource-group "$RG" --name "$VNET" --address-prefixes 10.40.0.0/16
az network vnet subnet create --resource-group "$RG" --vnet-name "$VNET" --name compute \
  --address-prefixes 10.40.0.0/20
az network vnet subnet create --resource-group "$RG" --vnet-name "$VNET" --name postgres \
  --address-prefixes 10.40.16.0/24 --delegations Microsoft.DBforPostgreSQL/flexibleServers

# Storage: no shared keys, Entra ID only; the data, the run logs and the two event queues.
az storage account create --resource-group "$RG" --name "$STORAGE" --location "$LOCATION" \
  --sku Standard_ZRS --kind StorageV2 --min-tls-version TLS1_2 --allow-blob-public-access false \
  --allow-shared-key-access false
STORAGE_ID=$(az storage account show --resource-group "$RG" --name "$STORAGE" --query id --output tsv)

# The identity every Dagster process and run uses (workload identity on AKS, user-assigned on ACA).
az identity create --resource-group "$RG" --name "$IDENTITY" --location "$LOCATION"
IDENTITY_PRINCIPAL=$(az identity show --resource-group "$RG" --name "$IDENTITY" --query principalId --output tsv)
IDENTITY_ID=$(az identity show --resource-group "$RG" --name "$IDENTITY" --query id --output tsv)

# Data plane roles: read/write blobs (data and compute logs), read and delete queue messages (events mode).
az role assignment create --assignee-object-id "$IDENTITY_PRINCIPAL" --assignee-principal-type ServicePrincipal \
  --role "Storage Blob Data Contributor" --scope "$STORAGE_ID"
az role assignment create --assignee-object-id "$IDENTITY_PRINCIPAL" --assignee-principal-type ServicePrincipal \
  --role "Storage Queue Data Message Processor" --scope "$STORAGE_ID"
# Whoever runs this script creates the containers and queues with its own Entra ID login.
az role assignment create --assignee "$(az ad signed-in-user show --query id --output tsv)" \
  --role "Storage Blob Data Contributor" --scope "$STORAGE_ID"
az role assignment create --assignee "$(az ad signed-in-user show --query id --output tsv)" \
  --role "Storage Queue Data Contributor" --scope "$STORAGE_ID"
az storage container create --account-name "$STORAGE" --name mnist --auth-mode login
az storage container create --account-name "$STORAGE" --name dagster-logs --auth-mode login
az storage queue create --account-name "$STORAGE" --name inference-events --auth-mode login
az storage queue create --account-name "$STORAGE" --name training-events --auth-mode login

# Event Grid: BlobCreated under inference/ and training/ of the data container, each into its queue
# (MNIST_SENSOR_MODE=events; docs/blob-automation.md). Messages live a week; failed deliveries retry.
az eventgrid event-subscription create --name inference-blob-created --source-resource-id "$STORAGE_ID" \
  --endpoint-type storagequeue --endpoint "$STORAGE_ID/queueservices/default/queues/inference-events" \
  --included-event-types Microsoft.Storage.BlobCreated \
  --subject-begins-with /blobServices/default/containers/mnist/blobs/inference/ \
  --qttl 604800 --max-delivery-attempts 30 --event-ttl 1440
az eventgrid event-subscription create --name training-blob-created --source-resource-id "$STORAGE_ID" \
  --endpoint-type storagequeue --endpoint "$STORAGE_ID/queueservices/default/queues/training-events" \
  --included-event-types Microsoft.Storage.BlobCreated \
  --subject-begins-with /blobServices/default/containers/mnist/blobs/training/ \
  --qttl 604800 --max-delivery-attempts 30 --event-ttl 1440

# Key Vault (RBAC): the PostgreSQL password, the one secret; the identity may read secrets.
az keyvault create --resource-group "$RG" --name "$KEYVAULT" --location "$LOCATION" \
  --enable-rbac-authorization true --retention-days 90 --enable-purge-protection true
KEYVAULT_ID=$(az keyvault show --resource-group "$RG" --name "$KEYVAULT" --query id --output tsv)
az role assignment create --assignee "$(az ad signed-in-user show --query id --output tsv)" \
  --role "Key Vault Secrets Officer" --scope "$KEYVAULT_ID"
az role assignment create --assignee-object-id "$IDENTITY_PRINCIPAL" --assignee-principal-type ServicePrincipal \
  --role "Key Vault Secrets User" --scope "$KEYVAULT_ID"
if ! az keyvault secret show --vault-name "$KEYVAULT" --name dagster-pg-password --query id --output tsv >/dev/null 2>&1; then
  az keyvault secret set --vault-name "$KEYVAULT" --name dagster-pg-password \
    --value "$(openssl rand -base64 32 | tr -d '/+=')" --output none
fi

# PostgreSQL flexible server in the delegated subnet, TLS required, 35 days of point-in-time backups.
az postgres flexible-server create --resource-group "$RG" --name "$PG_SERVER" --location "$LOCATION" \
  --version 16 --tier GeneralPurpose --sku-name Standard_D2ds_v5 --storage-size 64 \
  --backup-retention 35 --geo-redundant-backup Enabled \
  --vnet "$VNET" --subnet postgres --admin-user dagster \
  --admin-password "$(az keyvault secret show --vault-name "$KEYVAULT" --name dagster-pg-password --query value --output tsv)" \
  --yes
az postgres flexible-server db create --resource-group "$RG" --server-name "$PG_SERVER" --name dagster

# The registry, and the image built there from the lock (no local container engine needed).
az acr create --resource-group "$RG" --name "$ACR" --sku Standard --admin-enabled false
az role assignment create --assignee-object-id "$IDENTITY_PRINCIPAL" --assignee-principal-type ServicePrincipal \
  --role AcrPull --scope "$(az acr show --name "$ACR" --query id --output tsv)"
az acr build --registry "$ACR" --image "mnist-dagster:$IMAGE_TAG" --file deploy/image/Dockerfile .

echo "foundation ready: image $IMAGE, identity $IDENTITY_ID"
