"""The MNIST workload: what runs on compute (a local subprocess, AzureML, Azure Batch).

It imports no Dagster framework code; `dagster-pipes` (a dependency-free protocol library) carries
logs and metrics back to Dagster when the orchestrator launched it with Pipes.
"""
