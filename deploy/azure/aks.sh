#!/usr/bin/env bash
# Dagster on AKS with the official Helm chart (docs/deployment.md, "2a. AKS"), after foundation.sh.
# Needs az, kubectl and helm. Run from the project root:
#   PREFIX=mnistprod TENANT_ID=<tenant> ADF_PRINCIPAL_ID=<factory identity object id> \
#     GATEWAY_HOST=dagster-gateway.example.com bash deploy/azure/aks.sh
set -euo pipefail
source deploy/azure/settings.sh
: "${TENANT_ID:?}" "${ADF_PRINCIPAL_ID:?}" "${GATEWAY_HOST:?}"
: "${GATEWAY_AUDIENCE:=api://dagster-gateway}"

SUBNET_ID=$(az network vnet subnet show --resource-group "$RG" --vnet-name "$VNET" --name compute --query id --output tsv)
KEYVAULT_ID=$(az keyvault show --resource-group "$RG" --name "$KEYVAULT" --query id --output tsv)
CLIENT_ID=$(az identity show --resource-group "$RG" --name "$IDENTITY" --query clientId --output tsv)

# The cluster: workload identity (OIDC issuer + webhook), the managed NGINX ingress (app routing),
# Cilium for network policies, an autoscaled pool sized for runs of 2 CPUs / 4 GiB.
az aks create --resource-group "$RG" --name "$AKS" --location "$LOCATION" --tier standard \
  --node-count 2 --node-vm-size Standard_D4ds_v5 --enable-cluster-autoscaler --min-count 2 --max-count 6 \
  --network-plugin azure --network-plugin-mode overlay --network-dataplane cilium --network-policy cilium \
  --vnet-subnet-id "$SUBNET_ID" --enable-oidc-issuer --enable-workload-identity --enable-app-routing \
  --attach-acr "$ACR" --generate-ssh-keys
ISSUER=$(az aks show --resource-group "$RG" --name "$AKS" --query oidcIssuerProfile.issuerUrl --output tsv)

# The chart's service account (namespace dagster, name dagster) may act as the identity.
az identity federated-credential create --name aks-dagster --identity-name "$IDENTITY" --resource-group "$RG" \
  --issuer "$ISSUER" --subject system:serviceaccount:dagster:dagster --audiences api://AzureADTokenExchange

# The gateway's TLS certificate comes from Key Vault (certificate `dagster-gateway`, added by you).
az aks approuting update --resource-group "$RG" --name "$AKS" --enable-kv --attach-kv "$KEYVAULT_ID"
az aks get-credentials --resource-group "$RG" --name "$AKS" --overwrite-existing

render() {  # the manifests' <placeholders>, filled in
  sed -e "s|<data storage account>|$STORAGE|g" -e "s|<registry>|$ACR|g" -e "s|<tag>|$IMAGE_TAG|g" \
      -e "s|<tenant id>|$TENANT_ID|g" -e "s|<object id of the data factory's managed identity>|$ADF_PRINCIPAL_ID|g" \
      -e "s|<key vault>|$KEYVAULT|g" -e "s|<gateway host name>|$GATEWAY_HOST|g" \
      -e "s|api://dagster-gateway|$GATEWAY_AUDIENCE|g" "$1"
}
kubectl apply -f deploy/kubernetes/manifests/namespace.yaml
# The PostgreSQL password: a copy of the Key Vault secret (docs/runbook.md, "Rotating secrets").
kubectl create secret generic dagster-postgresql-secret --namespace dagster \
  --from-literal=postgresql-password="$(az keyvault secret show --vault-name "$KEYVAULT" --name dagster-pg-password --query value --output tsv)" \
  --dry-run=client --output yaml | kubectl apply -f -
render deploy/kubernetes/manifests/settings.yaml | kubectl apply -f -

helm repo add dagster https://dagster-io.github.io/helm
helm repo update dagster
helm upgrade --install dagster dagster/dagster --version 1.13.27 --namespace dagster \
  --values deploy/kubernetes/values.yaml --wait --timeout 15m \
  --set-string "serviceAccount.annotations.azure\.workload\.identity/client-id=$CLIENT_ID" \
  --set-string "postgresql.postgresqlHost=$PG_SERVER.postgres.database.azure.com" \
  --set-string "computeLogManager.config.azureBlobComputeLogManager.storageAccount=$STORAGE" \
  --set-string "dagsterWebserver.image.repository=$ACR.azurecr.io/mnist-dagster,dagsterWebserver.image.tag=$IMAGE_TAG" \
  --set-string "dagsterDaemon.image.repository=$ACR.azurecr.io/mnist-dagster,dagsterDaemon.image.tag=$IMAGE_TAG" \
  --set-string "dagster-user-deployments.deployments[0].image.repository=$ACR.azurecr.io/mnist-dagster" \
  --set-string "dagster-user-deployments.deployments[0].image.tag=$IMAGE_TAG"
render deploy/kubernetes/manifests/gateway.yaml | kubectl apply -f -
kubectl --namespace dagster rollout status deployment/dagster-gateway --timeout 5m
echo "gateway: https://$GATEWAY_HOST/graphql (DNS: point it at the app routing ingress IP:"
kubectl get service --namespace app-routing-system nginx --output jsonpath='{.status.loadBalancer.ingress[0].ip}'; echo ")"
