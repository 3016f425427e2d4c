"""Drive the AzureML contract fakes with the REAL SDKs (azureml-pipeline-core v1, azure-ai-ml v2).

This proves the fakes answer what the SDKs send and expect, so the project's own REST clients are
tested against the same contract. Both SDKs are imported here only (never by product code), with
HOME isolated (azureml-core caches discovery under ~/.azureml) and the environment restored
afterwards (MLClient writes AZUREML_CURRENT_CLOUD into os.environ).
"""

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.fakes.azureml_v1 import FakeAzureMLPipelines
from tests.support.fakes.azureml_v2 import FakeAzureMLBatch
from tests.support.fakes.http import TOKEN, FakeCredential


def sdk_submit_and_wait(
    fake: FakeAzureMLPipelines, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str, str]:
    """PipelineEndpoint.get + submit (DataPath parameters) + status + steps, as a v1 SDK user does."""
    saved = dict(os.environ)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AZUREML_DISCOVERY_SERVICE_ENDPOINT", f"{fake.url}/discovery")
    try:
        from azureml.core import Workspace
        from azureml.core.authentication import TokenAuthentication
        from azureml.data.azure_storage_datastore import AzureBlobDatastore
        from azureml.data.datapath import DataPath
        from azureml.pipeline.core import PipelineEndpoint, PublishedPipeline

        auth = TokenAuthentication(lambda audience: TOKEN, cloud="AzureCloud")
        ws = Workspace(
            fake.subscription,
            fake.resource_group,
            fake.workspace,
            auth=auth,
            _disable_service_check=True,
            _workspace_id="00000000-0000-0000-0000-000000000001",
            _location="westeurope",
        )
        # Skip the ARM workspace lookup: the discovery document is the fake's.
        ws._discovery_url_internal = f"{fake.url}/discovery"  # pyright: ignore[reportAttributeAccessIssue]
        endpoint = PipelineEndpoint.get(workspace=ws, name=fake.endpoint_name)
        datastore = AzureBlobDatastore(ws, fake.datastore, "mnist", "devstoreaccount1")
        run: Any = endpoint.submit(
            "sdk-tests",
            pipeline_parameters={
                "pca_components": "20",
                "raw_data": DataPath(datastore, "raw/mnist/r1"),
            },
        )
        deadline = time.monotonic() + 20
        status = run.get_status()
        while status not in ("Finished", "Failed", "Canceled") and time.monotonic() < deadline:
            time.sleep(0.2)
            status = run.get_status()
        steps = list(run.get_steps())
        assert [s.name for s in steps] == ["train"] and not steps[0]._is_reused
        # The published pipeline behind the default version, submitted directly.
        published = PublishedPipeline.get(ws, id=fake.versions[str(endpoint.default_version)])
        direct: Any = published.submit(
            ws,
            "sdk-tests",
            pipeline_parameters={
                "raw_data": DataPath(datastore, "raw/mnist/r2"),
            },
        )
        assert direct.get_status() in ("NotStarted", "Running", "Finished")
        return str(run.id), str(status), str(endpoint.default_version)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def sdk_invoke_poll_cancel(
    fake: FakeAzureMLBatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """batch_endpoints.invoke + jobs.get until done, then invoke + jobs.begin_cancel, as a v2 SDK user does."""
    saved = dict(os.environ)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AZUREML_DEV_URL_MFE", fake.url)
    try:
        from azure.ai.ml import Input, MLClient, Output
        from azure.core.pipeline.policies import SansIOHTTPPolicy

        class AllowHttp(SansIOHTTPPolicy):  # type: ignore[type-arg]
            def on_request(self, request: Any) -> None:
                request.context["enforce_https"] = False

        ml = MLClient(
            FakeCredential(),  # type: ignore[arg-type]
            fake.subscription,
            fake.resource_group,
            fake.workspace,
            per_call_policies=[AllowHttp()],
        )
        data = Input(type="uri_folder", path=f"azureml://datastores/{fake.datastore}/paths/inference/b1/")

        def out(name: str) -> Output:
            return Output(
                type="uri_folder", path=f"azureml://datastores/{fake.datastore}/paths/_batch_outputs/{name}/"
            )

        job = ml.batch_endpoints.invoke(
            endpoint_name=fake.endpoint_name, inputs={"batch": data}, outputs={"score": out("sdk1")}
        )
        deadline = time.monotonic() + 20
        status = _status(ml.jobs.get(str(job.name)))
        while status not in ("Completed", "Failed", "Canceled") and time.monotonic() < deadline:
            time.sleep(0.2)
            status = _status(ml.jobs.get(str(job.name)))
        fake.run_s = 30
        second = ml.batch_endpoints.invoke(
            endpoint_name=fake.endpoint_name,
            deployment_name="blue",
            inputs={"batch": data},
            outputs={"score": out("sdk2")},
        )
        ml.jobs.begin_cancel(str(second.name)).result(timeout=10)
        canceled = _status(ml.jobs.get(str(second.name)))
        return {"completed": status, "canceled": canceled}
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _status(job: Any) -> str:
    status = job.status
    return str(getattr(status, "value", status))
