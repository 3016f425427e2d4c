"""SDK parity, Azure Batch: what the backend builds by hand is sent as the azure-batch SDK sends it.

Every Batch call of the backend goes through azure-batch's own `BatchClient`; the hand-made parts are the
request bodies (wire-form dicts given to the SDK's option models, or as options where the model is
private), the OData `$filter` strings and the `ocp-range` value. For each operation with a hand-made
part, the backend's request and a plain SDK user's (typed models, keyword arguments) are recorded by
the same fake and compared: method, host and path (the spec's route), api-version, query, body field
names and casing (with enum, boolean and number values), and the token audience. A difference fails
unless `ALLOWED` lists it with the reason it is safe; docs/azure-fidelity.md keeps the same table.
"""

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from resources.compute import WorkloadRequest
from resources.compute.batch_tasks import AzureBatchBackend
from resources.storage import AzureBlobObjectStore
from tests.contract.test_azure_batch import SLEEPY
from tests.support.fakes.azure_batch import BatchFake, LoggedRequest
from tests.support.fakes.http import FakeCredential
from tests.support.remote import new_blob_store

pytestmark = pytest.mark.azurite

# (operation, aspect) -> why the difference is safe. Empty: the backend sends what the SDK sends.
ALLOWED: dict[tuple[str, str], str] = {}

# A string value is compared when it is a lowercase word (the spec's enums: noaction, terminatejob,
# tasksuccess, pool, admin, ...); ids, URLs with their SAS, command lines and durations only for presence.
ENUM = re.compile(r"^[a-z]+$")


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchFake]:
    with BatchFake(tmp_path_factory.mktemp("parity"), time_scale=600.0) as fake:
        yield fake


@pytest.fixture
def store(azurite: dict[str, str]) -> AzureBlobObjectStore:
    return new_blob_store(azurite, prefix="parity")


def backend(fake: BatchFake, **overrides: Any) -> AzureBatchBackend:
    return AzureBatchBackend(
        account_url=fake.url,
        credential="python:tests.support.fakes.http:fake_credential",
        allow_http_loopback=True,
        pool_id=f"par{uuid.uuid4().hex[:6]}",
        package_dir=str(SLEEPY),
        start_command="echo installing {requirements}",
        lro_polling_seconds=0,
        backoff_seconds=0.01,
        **overrides,
    )


def sdk(fake: BatchFake) -> Any:
    """A plain azure-batch client, as its documentation shows, with an Entra ID credential."""
    from azure.batch import BatchClient  # noqa: TID251 (the real SDK, in a test)

    from resources.azure.credentials import loopback_http_policy

    return BatchClient(fake.url, FakeCredential(), per_call_policies=[loopback_http_policy()])  # type: ignore[arg-type]


def flatten(value: Any, path: str = "") -> dict[str, Any]:
    """Body field paths (list items as []) -> the value where it is compared, else its type."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{path}.{key}" if path else key))
        return out
    if isinstance(value, list):
        out = {}
        for item in value:
            out.update(flatten(item, f"{path}[]"))
        return out
    if isinstance(value, str) and not ENUM.match(value):
        return {path: "<text>"}
    return {path: value}


def shape(fake: BatchFake, request: LoggedRequest) -> dict[str, Any]:
    route, _ = fake._route(request.method, request.path)
    query = {k: v for k, v in request.query.items() if k != "api-version"}
    # Time-stamped filters differ by the moment they were made, not in form.
    query = {k: [re.sub(r"datetime'[^']+'", "datetime'<t>'", x) for x in v] for k, v in query.items()}
    return {
        "method": request.method,
        "route": route.template if route else request.path,
        "host": request.host,
        "api-version": request.query.get("api-version"),
        "query": query,
        "auth": request.auth,
        **{f"body:{k}": v for k, v in flatten(request.body or {}).items()},
    }


def differences(fake: BatchFake, operation: str, ours: LoggedRequest, theirs: LoggedRequest) -> list[str]:
    a, b = shape(fake, ours), shape(fake, theirs)
    found = []
    for aspect in sorted(set(a) | set(b)):
        if a.get(aspect, "<absent>") != b.get(aspect, "<absent>") and (operation, aspect) not in ALLOWED:
            found.append(
                f"{operation} {aspect}: backend {a.get(aspect, '<absent>')!r}, SDK {b.get(aspect, '<absent>')!r}"
            )
    return found


def taken(fake: BatchFake, since: int, operation: str) -> LoggedRequest:
    """The first successful request of `operation` after the `since`-th."""
    found = [r for r in fake.requests()[since:] if r.operation == operation and 200 <= r.status < 300]
    assert found, f"no successful {operation} since request {since}"
    return found[0]


def test_the_backends_hand_made_requests_are_what_the_sdk_sends(
    fake: BatchFake, store: AzureBlobObjectStore
) -> None:
    from azure.batch import models  # noqa: TID251 (the real SDK, in a test)
    from azure.batch.models._models import BatchJobTerminateOptions  # noqa: TID251 (private in 15.x)

    ours, client = backend(fake), sdk(fake)
    config = ours.pools()
    problems: list[str] = []

    def compare(operation: str, product: int, plain: int) -> None:
        problems.extend(
            differences(fake, operation, taken(fake, product, operation), taken(fake, plain, operation))
        )

    # ---- create_pool: the spec dict vs the typed pool ----------------------------------------------------
    mark = len(fake.requests())
    pool_id = config.ensure()
    sdk_mark = len(fake.requests())
    spec = config.spec()
    sdk_pool = f"sdk{uuid.uuid4().hex[:8]}"
    client.create_pool(
        models.BatchPoolCreateOptions(
            id=sdk_pool,
            vm_size=ours.vm_size,
            virtual_machine_configuration=models.VirtualMachineConfiguration(
                image_reference=models.BatchVmImageReference(
                    publisher=ours.image_publisher,
                    offer=ours.image_offer,
                    sku=ours.image_sku,
                    version="latest",
                ),
                node_agent_sku_id=ours.node_agent_sku_id,
            ),
            start_task=models.BatchStartTask(
                command_line=spec["startTask"]["commandLine"],
                wait_for_success=True,
                max_task_retry_count=2,
                user_identity=models.UserIdentity(
                    auto_user=models.AutoUserSpecification(scope="pool", elevation_level="admin")
                ),
            ),
            task_slots_per_node=1,
            target_dedicated_nodes=ours.node_count,
            metadata=[models.BatchMetadataItem(name="created-by", value="mnist-orchestration")],
        )
    )
    compare("Pools_CreatePool", mark, sdk_mark)

    # ---- create_job (noaction), create_task, update_job (PATCH terminatejob): the backend's submit ------
    mark = len(fake.requests())
    request = WorkloadRequest(
        task="work",
        idempotency_key=f"parity-{uuid.uuid4()}",
        inputs={"data": "inputs/x"},
        outputs={"out": "results/x"},
        params={"seconds": 0.1},
    )
    store.put_bytes("inputs/x/data.txt", b"input")
    job_id = ours.submit(request, store, {"DAGSTER_PIPES_CONTEXT": "e30="})
    product_job = next(r for r in fake.requests()[mark:] if r.operation == "Jobs_CreateJob")
    product_task = taken(fake, mark, "Tasks_CreateTask").body
    sdk_mark = len(fake.requests())
    cutoff = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    list(client.list_jobs(filter=f"state eq 'active' and creationTime lt datetime'{cutoff}'"))
    sdk_job = f"sdk-{uuid.uuid4().hex[:8]}"
    client.create_job(
        models.BatchJobCreateOptions(
            id=sdk_job,
            display_name=product_job.body["displayName"],
            pool_info=models.BatchPoolInfo(pool_id=pool_id),
            all_tasks_complete_mode="noaction",
            metadata=[
                models.BatchMetadataItem(name="created-by", value="mnist-orchestration"),
                models.BatchMetadataItem(name="idempotency-key", value=request.idempotency_key),
            ],
        )
    )

    def output(pattern: str, path: str, condition: str) -> Any:
        container = product_task["outputFiles"][0]["destination"]["container"]["containerUrl"]
        return models.OutputFile(
            file_pattern=pattern,
            destination=models.OutputFileDestination(
                container=models.OutputFileBlobContainerDestination(container_url=container, path=path)
            ),
            upload_options=models.OutputFileUploadConfiguration(upload_condition=condition),
        )

    client.create_task(
        sdk_job,
        models.BatchTaskCreateOptions(
            id="workload",
            display_name=product_task["displayName"],
            command_line=product_task["commandLine"],
            resource_files=[
                models.ResourceFile(
                    storage_container_url=f["storageContainerUrl"],
                    blob_prefix=f["blobPrefix"],
                    file_path=f["filePath"],
                )
                for f in product_task["resourceFiles"]
            ],
            output_files=[
                output("out/out/**/*", f"_compute/batch/{sdk_job}/outputs/out", "tasksuccess"),
                output("../stdout.txt", f"_compute/batch/{sdk_job}/logs/stdout.txt", "taskcompletion"),
                output("../stderr.txt", f"_compute/batch/{sdk_job}/logs/stderr.txt", "taskcompletion"),
            ],
            environment_settings=[
                models.EnvironmentSetting(name=e["name"], value=e["value"])
                for e in product_task["environmentSettings"]
            ],
            constraints=models.BatchTaskConstraints(
                max_wall_clock_time=timedelta(hours=24), max_task_retry_count=0
            ),
            user_identity=models.UserIdentity(
                auto_user=models.AutoUserSpecification(scope="pool", elevation_level="nonadmin")
            ),
        ),
    )
    client.update_job(sdk_job, models.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
    for operation in ("Jobs_ListJobs", "Jobs_CreateJob", "Tasks_CreateTask", "Jobs_UpdateJob"):
        compare(operation, mark, sdk_mark)

    # ---- download_task_file with a byte range (the backend's live logs) ----------------------------------
    deadline = time.monotonic() + 30
    while not ours.status(job_id).state.terminal and time.monotonic() < deadline:
        time.sleep(0.05)
    mark = len(fake.requests())
    assert ours.new_log_lines(job_id), "the task wrote to stdout"
    sdk_mark = len(fake.requests())
    b"".join(client.download_task_file(sdk_job, "workload", "stdout.txt", ocp_range="bytes=0-3"))
    compare("Tasks_GetTaskFile", mark, sdk_mark)

    # ---- terminate_job with a reason: the wire form vs the SDK's (private) options model -----------------
    spare = f"{job_id}-spare"
    ours.create_job(spare, request)
    sdk_spare = f"{sdk_job}-spare"
    client.create_job(
        models.BatchJobCreateOptions(id=sdk_spare, pool_info=models.BatchPoolInfo(pool_id=pool_id))
    )
    mark = len(fake.requests())
    ours.cancel(spare)
    sdk_mark = len(fake.requests())
    client.begin_terminate_job(
        sdk_spare, BatchJobTerminateOptions(termination_reason="CanceledFromDagster"), polling_interval=0
    ).result()
    compare("Jobs_TerminateJob", mark, sdk_mark)

    assert not problems, "the backend's requests differ from the SDK's:\n" + "\n".join(problems)


def test_the_job_update_is_a_patch_that_keeps_what_it_does_not_name(fake: BatchFake) -> None:
    """The SDK has `update_job` (PATCH: only the properties given change) and `replace_job` (PUT: every
    updatable property is replaced, so the job's metadata, which retention and the orphan sweep key on,
    would go). The backend's update is the PATCH, with the completion mode alone."""
    ours = backend(fake)
    request = WorkloadRequest(task="work", idempotency_key=f"patch-{uuid.uuid4()}", inputs={}, outputs={})
    job_id = ours.base_job_id(request)
    ours.create_job(job_id, request)
    mark = len(fake.requests())
    ours.end_with_task(job_id)
    (update,) = [r for r in fake.requests()[mark:] if r.operation.startswith("Jobs_")]
    assert (update.method, update.operation, update.body) == (
        "PATCH",
        "Jobs_UpdateJob",
        {"onAllTasksComplete": "terminatejob"},
    )
    job = fake.jobs[job_id]
    assert job.state == "completed", "a terminatejob job with no task ends at once, as on the service"
    assert {m["name"] for m in job.body["metadata"]} == {"created-by", "idempotency-key"}
    # Going back is refused, as the service refuses it.
    from azure.batch import models  # noqa: TID251 (the real SDK, in a test)
    from azure.core.exceptions import HttpResponseError

    other = f"{job_id}-b"
    client = sdk(fake)
    client.create_job(
        models.BatchJobCreateOptions(
            id=other,
            pool_info=models.BatchPoolInfo(pool_id=ours.pools().ensure()),
            all_tasks_complete_mode="noaction",
        )
    )
    client.create_task(other, models.BatchTaskCreateOptions(id="t", command_line="/bin/sleep 5"))
    client.update_job(other, models.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
    with pytest.raises(HttpResponseError) as err:
        client.update_job(other, models.BatchJobUpdateOptions(all_tasks_complete_mode="noaction"))
    assert err.value.status_code == 400 and "InvalidPropertyValue" in str(err.value)
