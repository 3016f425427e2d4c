"""AzureML compute (REST via azure-core): training on a v1 PipelineEndpoint or as a v2 command job, scoring on a
v2 batch endpoint."""

from resources.compute.azureml.batch_endpoint_scoring import AzureMLBatchEndpointBackend
from resources.compute.azureml.command_job_training import AzureMLCommandJobBackend
from resources.compute.azureml.pipeline_endpoint_training import AzureMLPipelineBackend

__all__ = ["AzureMLBatchEndpointBackend", "AzureMLCommandJobBackend", "AzureMLPipelineBackend"]
