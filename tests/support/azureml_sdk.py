"""Drive the AzureML contract fakes with the REAL SDKs (azureml-pipeline-core v1, azure-ai-ml v2).

This proves the fakes answer what the SDKs send and expect, so the project's own REST clients are
tested against the same contract; `V1Sdk` / `V2Sdk` make, one by one, the calls the backends make by
hand, for the SDK parity tests (tests/contract/test_sdk_parity_azureml.py). Both SDKs are imported
here only (never by product code), with HOME isolated (azureml-core caches discovery under
~/.azureml) and the environment restored afterwards (MLClient writes AZUREML_CURRENT_CLOUD into
os.environ).
"""

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fakes.azureml_v1 import FakeAzureMLPipelines
from tests.support.fakes.azureml_v2 import FakeAzureMLBatch
from tests.support.fakes.http import FakeCredential, token_for


@contextlib.contextmanager
def sdk_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[None]:
    """HOME isolated and `env` set while the SDKs run; the whole environment restored afterwards."""
    saved = dict(os.environ)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def v1_workspace(fake: FakeAzureMLPipelines, get_token: Callable[[str], str] = token_for) -> Any:
    """An azureml-core Workspace on the fake; `get_token(resource)` answers TokenAuthentication (azureml-core
    asks for a token per audience: ARM, or AzureML for some services).
    Needs AZUREML_DISCOVERY_SERVICE_ENDPOINT pointing at the fake (see `sdk_environment`)."""
    from azureml.core import Workspace
    from azureml.core.authentication import TokenAuthentication

    auth = TokenAuthentication(get_token, cloud="AzureCloud")
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
    return ws


def v2_client(fake: FakeAzureMLBatch, credential: Any = None) -> Any:
    """An azure-ai-ml MLClient on the fake (plain http allowed). Needs AZUREML_DEV_URL_MFE set to the
    fake's URL (see `sdk_environment`)."""
    from azure.ai.ml import MLClient
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class AllowHttp(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def on_request(self, request: Any) -> None:
            request.context["enforce_https"] = False

    return MLClient(
        credential or FakeCredential(),
        fake.subscription,
        fake.resource_group,
        fake.workspace,
        per_call_policies=[AllowHttp()],
    )


def sdk_submit_and_wait(
    fake: FakeAzureMLPipelines, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str, str]:
    """PipelineEndpoint.get + submit (DataPath parameter) + status + steps, as a v1 SDK user does."""
    with sdk_environment(tmp_path, monkeypatch, AZUREML_DISCOVERY_SERVICE_ENDPOINT=f"{fake.url}/discovery"):
        from azureml.data.azure_storage_datastore import AzureBlobDatastore
        from azureml.data.datapath import DataPath
        from azureml.pipeline.core import PipelineEndpoint, PublishedPipeline

        ws = v1_workspace(fake)
        endpoint = PipelineEndpoint.get(workspace=ws, name=fake.endpoint_name)
        datastore = AzureBlobDatastore(ws, fake.datastore, "mnist", "devstoreaccount1")
        run: Any = endpoint.submit(
            "sdk-tests",
            pipeline_parameters={"pca_components": "20", "raw_data": DataPath(datastore, "raw/mnist/r1")},
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
            ws, "sdk-tests", pipeline_parameters={"raw_data": DataPath(datastore, "raw/mnist/r2")}
        )
        assert direct.get_status() in ("NotStarted", "Running", "Finished")
        return str(run.id), str(status), str(endpoint.default_version)


def sdk_invoke_poll_cancel(
    fake: FakeAzureMLBatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """batch_endpoints.invoke + jobs.get until done, then invoke + jobs.begin_cancel, as a v2 SDK user does."""
    with sdk_environment(tmp_path, monkeypatch, AZUREML_DEV_URL_MFE=fake.url):
        from azure.ai.ml import Input, Output

        ml = v2_client(fake)
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


def _status(job: Any) -> str:
    status = job.status
    return str(getattr(status, "value", status))


class V1Sdk:
    """azureml-pipeline-core / azureml-core making, one at a time, the calls the v1 backend makes by hand."""

    def __init__(self, fake: FakeAzureMLPipelines, experiment: str, token_for: Callable[[str], str]) -> None:
        from azureml.core import Experiment
        from azureml.data.azure_storage_datastore import AzureBlobDatastore

        self.fake = fake
        self.ws = v1_workspace(fake, token_for)
        self.datastore = AzureBlobDatastore(self.ws, fake.datastore, "mnist", "devstoreaccount1")
        self.experiment = Experiment(self.ws, experiment, _create_in_cloud=False)
        self._endpoint: Any = None

    def endpoint_by_name(self) -> None:
        from azureml.pipeline.core import PipelineEndpoint

        self._endpoint = PipelineEndpoint.get(workspace=self.ws, name=self.fake.endpoint_name)

    def endpoint_by_id(self) -> None:
        from azureml.pipeline.core import PipelineEndpoint

        PipelineEndpoint.get(workspace=self.ws, id=self.fake.endpoint_id)

    def submit(
        self, parameters: dict[str, str], datapaths: dict[str, str], version: str | None = None
    ) -> str:
        """PipelineEndpoint.submit with string parameters and DataPath parameters (name -> datastore path)."""
        from azureml.data.datapath import DataPath

        if self._endpoint is None:
            self.endpoint_by_name()
        endpoint: Any = self._endpoint
        values: dict[str, Any] = {**parameters}
        values.update({name: DataPath(self.datastore, path) for name, path in datapaths.items()})
        run = endpoint.submit(self.experiment.name, pipeline_parameters=values, pipeline_version=version)
        return str(run.id)

    def run_status(self, run_id: str) -> str:
        from azureml.pipeline.core import PipelineRun

        return str(PipelineRun(self.experiment, run_id).get_status())

    def find_runs(self, properties: dict[str, str]) -> list[str]:
        from azureml.core import Run

        return [str(r.id) for r in Run.list(self.experiment, properties=properties)]

    def children(self, run_id: str) -> list[str]:
        from azureml.core import Run

        return [str(c.id) for c in Run(self.experiment, run_id).get_children()]

    def details(self, run_id: str) -> dict[str, Any]:
        """Run.get_details()'s run-history call (the rest of get_details reads artifacts)."""
        from azureml.core import Run

        return Run(self.experiment, run_id)._client.get_runstatus().as_dict()  # pyright: ignore[reportAttributeAccessIssue]

    def cancel(self, run_id: str) -> None:
        from azureml.pipeline.core import PipelineRun

        PipelineRun(self.experiment, run_id).cancel()


class V2Sdk:
    """azure-ai-ml making, one at a time, the calls the v2 batch backend makes by hand."""

    def __init__(self, fake: FakeAzureMLBatch, credential: Any) -> None:
        self.fake = fake
        self.ml = v2_client(fake, credential)

    def endpoint(self) -> None:
        self.ml.batch_endpoints.get(self.fake.endpoint_name)

    def deployment(self, name: str) -> None:
        self.ml.batch_deployments.get(name, endpoint_name=self.fake.endpoint_name)

    def model(self, name: str, version: str) -> None:
        self.ml.models.get(name, version=version)

    def invoke(self, deployment: str, batch_uri: str, output_uri: str, job_name: str, experiment: str) -> str:
        from azure.ai.ml import Input, Output

        job = self.ml.batch_endpoints.invoke(
            endpoint_name=self.fake.endpoint_name,
            deployment_name=deployment,
            inputs={"batch": Input(type="uri_folder", path=batch_uri)},
            outputs={"score": Output(type="uri_folder", path=output_uri)},
            job_name=job_name,
            experiment_name=experiment,
        )
        return str(job.name)

    def job(self, name: str) -> bool:
        """Jobs_Get; False when there is no such job."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.ml.jobs.get(name)
        except ResourceNotFoundError:
            return False
        return True

    def cancel(self, name: str) -> None:
        self.ml.jobs.begin_cancel(name).result(timeout=10)

    def _runs(self) -> Any:
        """azure-ai-ml's run-history operations, which `jobs.stream` and `jobs.download` use for a batch job.
        The SDK finds run history's URL in the workspace's discovery document; here it is the fake's."""
        jobs: Any = self.ml.jobs
        jobs._api_base_url = self.fake.url
        return jobs._runs_operations

    def run_children(self, run_id: str) -> list[Any]:
        return list(self._runs().get_run_children(run_id))

    def run_details(self, run_id: str) -> dict[str, Any]:
        return self._runs().get_run_details(run_id).as_dict()

    def log_file(self, url: str) -> str:
        """A log file's SAS URL read as `jobs.stream` reads it (download_text_from_url, no token)."""
        from azure.ai.ml._utils.utils import create_requests_pipeline_with_retry, download_text_from_url

        jobs: Any = self.ml.jobs
        pipeline = create_requests_pipeline_with_retry(requests_pipeline=jobs._requests_pipeline)
        return str(download_text_from_url(url, pipeline))

    # ---- the rollout's calls (resources/serving/azureml_batch.py), as deploy/azureml/deploy_batch.py makes them ----
    def register_model(self, name: str, version: str, path: str, tags: dict[str, str]) -> None:
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        model = Model(
            name=name,
            version=version,
            path=path,
            type=AssetTypes.MLFLOW_MODEL,
            description="MNIST classifier promoted by Dagster",
            tags=tags,
        )
        self.ml.models.create_or_update(model)

    def update_deployment(self, name: str, model_id: str) -> None:
        """batch_deployments.get, then begin_create_or_update with another model, polled to its end."""
        deployment = self.ml.batch_deployments.get(name, endpoint_name=self.fake.endpoint_name)
        deployment.model = model_id
        self.ml.batch_deployments.begin_create_or_update(deployment).result(timeout=20)

    def set_default(self, deployment: str) -> None:
        from azure.ai.ml.entities import BatchEndpoint

        endpoint = BatchEndpoint(name=self.fake.endpoint_name, defaults={"deployment_name": deployment})
        self.ml.batch_endpoints.begin_create_or_update(endpoint).result(timeout=20)

    # ---- v2 training's calls (resources/compute/azureml/command_job_training.py) ----------------------------------
    def command_job(
        self,
        name: str,
        command: str,
        inputs: dict[str, str],
        outputs: dict[str, str],
        *,
        environment: str,
        compute: str,
        experiment: str,
        environment_variables: dict[str, str],
        display_name: str,
        description: str,
        properties: dict[str, str],
        tags: dict[str, str],
    ) -> None:
        """jobs.create_or_update(command(...)): uri_folder inputs (read-only mounts) and outputs (read-write
        mounts) on datastore URIs, a registered environment `azureml:name:version`, a compute cluster by name."""
        from azure.ai.ml import Input, Output
        from azure.ai.ml import command as command_job

        job = command_job(
            name=name,
            command=command,
            inputs={k: Input(type="uri_folder", path=v, mode="ro_mount") for k, v in inputs.items()},
            outputs={k: Output(type="uri_folder", path=v, mode="rw_mount") for k, v in outputs.items()},
            environment=environment,
            compute=compute,
            experiment_name=experiment,
            environment_variables=environment_variables,
            display_name=display_name,
            description=description,
            properties=properties,
            tags=tags,
        )
        self.ml.jobs.create_or_update(job)

    def register_trained_model(
        self,
        name: str,
        version: str,
        path: str,
        job_name: str,
        description: str,
        properties: dict[str, str],
        tags: dict[str, str],
    ) -> None:
        """models.create_or_update(Model(type=mlflow_model, path=azureml://datastores/...)) of a job's output,
        with the job it came from (`job_name`)."""
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        model = Model(
            name=name,
            version=version,
            path=path,
            type=AssetTypes.MLFLOW_MODEL,
            description=description,
            properties=properties,
            tags=tags,
            job_name=job_name,
        )
        self.ml.models.create_or_update(model)


def sdk_roll_out(
    fake: FakeAzureMLBatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: str, version: str
) -> tuple[str, str]:
    """models.create_or_update (an MLflow model in place on the datastore), then batch_deployments.get +
    begin_create_or_update with the new model (an LRO polled through Azure-AsyncOperation), as a v2 SDK
    user rolls a model out (deploy/azureml/deploy_batch.py). Returns what the deployment serves."""
    with sdk_environment(tmp_path, monkeypatch, AZUREML_DEV_URL_MFE=fake.url):
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        ml = v2_client(fake)
        model = ml.models.create_or_update(
            Model(
                name="mnist",
                version=version,
                path=f"azureml://datastores/{fake.datastore}/paths/{folder}",
                type=AssetTypes.MLFLOW_MODEL,
            )
        )
        deployment = ml.batch_deployments.get("blue", endpoint_name=fake.endpoint_name)
        deployment.model = model.id
        done = ml.batch_deployments.begin_create_or_update(deployment).result(timeout=20)
        name, _, served = (
            str(getattr(done.model, "id", done.model)).split("/models/", 1)[1].partition("/versions/")
        )
        return name, served
