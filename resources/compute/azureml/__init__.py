"""AzureML compute: training on a v1 PipelineEndpoint, scoring on a v2 batch endpoint (REST via azure-core)."""

from resources.compute.azureml.batch_endpoint_scoring import AzureMLBatchEndpointBackend
from resources.compute.azureml.pipeline_endpoint_training import AzureMLPipelineBackend

__all__ = ["AzureMLBatchEndpointBackend", "AzureMLPipelineBackend"]
