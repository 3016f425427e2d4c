"""Every part of Dagster's internals that the instance plugins rely on, in one place.

A run launcher or run coordinator named in dagster.yaml is an extension point Dagster supports
(dagster-k8s and dagster-azure plug in the same way), but its interface is not Dagster's public API:
the base classes, the objects they receive and the instance methods they call live under `dagster._*`
or are not marked public. The plugins (`warm_launcher`, `warm_process`, `run_worker`,
`run_coordinator`) import such things only from this module, and `RELIED_UPON` records the shape each
use depends on (the names, the parameters passed, the attributes read).
tests/unit/test_dagster_internals.py checks every row against the installed Dagster, so an upgrade
that changes one fails there, naming it, instead of in the daemon at run time. A new use is a new
row (and a line below). Public names (`dagster.DagsterRun`,
`dagster.Field`, `dagster.QueuedRunCoordinator`, ...) are imported from `dagster` where they are used;
a row records what the plugins use of them beyond their public API.

What each is used for, and why no public API serves:

Classes configured in dagster.yaml (both plugins)
- `ConfigurableClass`, `ConfigurableClassData`: the interface of a class named in dagster.yaml
  (`config_type`, `from_config_value`, `inst_data`); `dagster` does not export it. The `module_name`
  of the class data in an `InstanceRef` names the storage modules the warm process preloads.
- `UserConfigSchema`: the type `config_type` returns, so the overrides type-check.

Run launcher (warm_launcher)
- `RunLauncher`, `LaunchRunContext`, `CheckRunHealthResult`, `WorkerStatus`: the run launcher
  interface (base class and hooks, what `launch_run` receives, what a health check answers); `dagster`
  exports none of them.
- `DefaultRunLauncher` (a public class): the fallback, created and attached to the instance by hand
  (`register_instance` is not public) and driven through the launcher interface.
- `GRPC_INFO_TAG`: the tag the DefaultRunLauncher puts on a run it launched through the code server;
  its presence tells that a run was launched by the fallback (whose `terminate` then applies).
- `ModuleCodePointer`, `PackageCodePointer`, `JobPythonOrigin`, `RepositoryPythonOrigin`,
  `DagsterRun.job_code_origin`: where a run's code location is loaded from (module, working directory,
  interpreter), which decides whether the warm process can start the run. No public API describes a
  run's code origin.
- `DagsterInstance.get_ref`, `report_engine_event`, `report_run_canceling` (not marked public): the
  instance ref the warm process and the run workers re-create the instance from; engine events and the
  CANCELING state, reported as Dagster's own launchers report them.
- `str_param`: the argument check Dagster's launchers make in `terminate`.

Run worker (run_worker, warm_process)
- `_execute_run_command_body` (dagster._cli.api): the body of `dagster api execute_run` (the job
  rebuilt from the run's origin, `core_execute_run`, the run's end states). The only public route to
  it is that command in a new process, which is the cold start the warm launcher exists to avoid.
  Imported on first use (0.3 s that most processes loading the instance never need); the warm process
  preloads `EXECUTE_RUN_MODULE` so that its run workers do not pay it.
- `InstanceRef`, `DagsterInstance.from_ref` (not marked public): a run worker re-creates the
  launcher's instance from its ref, as `execute_run` does; the ref's `_fields` list the configured
  classes whose modules the warm process preloads.
- `capture_interrupts`: SIGINT in a step becomes DagsterExecutionInterruptedError (so remote compute
  jobs are cancelled), as `execute_run` wraps its body.
- `DagsterInstance.add_run_tags` (not marked public): a run worker records its pid in the run's tags.
- `HIDDEN_TAG_PREFIX`: that tag's prefix, so the UI does not show it on every run (GraphQL drops the
  tags `get_tag_type` calls HIDDEN, as for Dagster's own `.dagster/grpc_info`). No public API marks a
  tag as hidden.

Run coordinator (run_coordinator)
- `QueuedRunCoordinator` (a public class), subclassed: its `config_type` (a dict of Fields, extended),
  `from_config_value` (builds `cls(...)`, so it builds the subclass), `submit_run`, and its private
  `_instance` and `_logger`. Nothing public hooks into the submission of a run.
- `SubmitRunContext.dagster_run`, `DagsterInstance.get_runs` (not marked public): the run submitted,
  and the earlier runs with the same idempotency key.
- `SubmitRunContext.workspace`, `BaseWorkspaceRequestContext.asset_graph`,
  `RemoteWorkspaceAssetGraph.get_repo_scoped_node` (a `RemoteRepositoryAssetNode` and its
  `partitions_def`), `RemoteRepositoryOrigin.get_selector`,
  `DagsterInstance.get_execution_plan_snapshot`, `ExecutionPlanSnapshot.asset_selection`: which assets a
  submitted run materializes (its execution plan) and their partitions definitions as the code location
  declares them (its asset graph), read the way `create_run` reads them; Dagster checks partitions only
  when a step writes its output, after the work. `partition_loading_context`: whether a partition
  exists, dynamic ones read from the instance (`has_partition_key` takes no store of its own).
- `EventLogStorage.get_pool_limits` (each a `PoolLimit`), `set_concurrency_slots` (not marked public; the CLI's
  `dagster instance concurrency set` calls the latter): the concurrency pools' limits, which Dagster
  keeps in storage and dagster.yaml cannot set one by one.
- `UserFacingGraphQLError`, `GraphenePythonError` (dagster-graphql) and `SerializableErrorInfo`: a
  refused launch answered as a typed error (HTTP 200, the message and no stack) instead of an
  unexpected exception, which dagster-graphql answers with HTTP 500 and a stack trace (and ADF retries).
  Imported on first refusal: dagster-graphql takes 2 s to import, and only the webserver has it loaded.
- `QueuedRunCoordinator.get_run_queue_config` (overridden; returns a `RunQueueConfig`), which the
  daemon calls at every dequeue iteration: the moment to put runs orphaned in STARTING back in the
  queue, with `DagsterEvent.job_enqueue` and `DagsterInstance.report_dagster_event`, as the daemon's
  own dequeuer re-queues a run whose launch failed. Nothing public runs code in the daemon's loop.
- `DagsterInstance.get_records_for_run` (not marked public): when a run with no launcher recorded was
  marked STARTING (its RUN_STARTING event), to tell a launch orphaned by a previous daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._check import str_param
from dagster._config.config_schema import UserConfigSchema
from dagster._core.code_pointer import ModuleCodePointer, PackageCodePointer
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.instance import InstanceRef
from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._core.run_coordinator.queued_run_coordinator import RunQueueConfig
from dagster._core.storage.tags import GRPC_INFO_TAG, HIDDEN_TAG_PREFIX
from dagster._serdes import ConfigurableClass
from dagster._serdes.config_class import ConfigurableClassData
from dagster._utils.interrupts import capture_interrupts
from dagster_shared.error import SerializableErrorInfo

__all__ = [
    "EXECUTE_RUN_MODULE",
    "GRPC_INFO_TAG",
    "HIDDEN_TAG_PREFIX",
    "RELIED_UPON",
    "CheckRunHealthResult",
    "ConfigurableClass",
    "ConfigurableClassData",
    "InstanceRef",
    "Internal",
    "LaunchRunContext",
    "ModuleCodePointer",
    "PackageCodePointer",
    "RunLauncher",
    "RunQueueConfig",
    "UserConfigSchema",
    "WorkerStatus",
    "capture_interrupts",
    "execute_run_command_body",
    "has_partition",
    "launch_refusal",
    "partitions_of_run_assets",
    "pool_limits",
    "set_pool_limit",
    "str_param",
]

# The module of `_execute_run_command_body`, which the warm process imports before it forks.
EXECUTE_RUN_MODULE = "dagster._cli.api"


def execute_run_command_body(
    run_id: str,
    instance: dg.DagsterInstance,
    write_stream_fn: Callable[[Any], Any],
    set_exit_code_on_failure: bool,
) -> int:
    """What `dagster api execute_run` does for `run_id` on `instance`; returns its exit code."""
    from dagster._cli.api import _execute_run_command_body

    return _execute_run_command_body(
        run_id, instance, write_stream_fn, set_exit_code_on_failure=set_exit_code_on_failure
    )


def partitions_of_run_assets(
    instance: dg.DagsterInstance, run: dg.DagsterRun, workspace: Any
) -> Mapping[dg.AssetKey, dg.PartitionsDefinition | None]:
    """Each asset the run materializes (the steps its execution plan executes), with its partitions
    definition as the run's code location declares it (None: not partitioned)."""
    if run.execution_plan_snapshot_id is None or run.remote_job_origin is None:
        return {}
    assets: Set[dg.AssetKey] = instance.get_execution_plan_snapshot(
        run.execution_plan_snapshot_id
    ).asset_selection
    repository = run.remote_job_origin.repository_origin.get_selector()
    found: dict[dg.AssetKey, dg.PartitionsDefinition | None] = {}
    for key in sorted(assets, key=lambda k: k.to_user_string()):
        node = workspace.asset_graph.get_repo_scoped_node(key, repository)
        found[key] = getattr(node, "partitions_def", None)
    return found


def has_partition(definition: dg.PartitionsDefinition, key: str, instance: dg.DagsterInstance) -> bool:
    """Whether `key` is a partition of `definition` now (dynamic partitions as the instance holds them)."""
    with partition_loading_context(dynamic_partitions_store=instance):
        return definition.has_partition_key(key)


def pool_limits(instance: dg.DagsterInstance) -> dict[str, int]:
    """The limit of every concurrency pool that has one, as the instance's storage holds them."""
    return {pool.name: pool.limit for pool in instance.event_log_storage.get_pool_limits()}


def set_pool_limit(instance: dg.DagsterInstance, pool: str, limit: int) -> None:
    """What `dagster instance concurrency set <pool> <limit>` does."""
    instance.event_log_storage.set_concurrency_slots(pool, limit)


def launch_refusal(class_name: str, message: str) -> Exception:
    """An exception that dagster-graphql answers as `PythonError` with `className`, this message and no
    stack (HTTP 200), as it answers its own typed errors; its str() says the same to other callers
    (the daemon's sensor and backfill launches log it)."""
    from dagster_graphql.implementation.utils import UserFacingGraphQLError
    from dagster_graphql.schema.errors import GraphenePythonError

    error = UserFacingGraphQLError(
        GraphenePythonError(SerializableErrorInfo(message=message, stack=[], cls_name=class_name))
    )
    error.args = (f"{class_name}: {message}",)
    return error


@dataclass(frozen=True)
class Internal:
    """One thing of Dagster's that the plugins rely on, and the shape they rely on.

    `symbol` is "module:qualified.name": where the plugins import it from, or where it is defined for
    what they only reach through other objects. `args` are the parameters passed by position, named
    as Dagster names them (None: the plugins do not call it); `kwargs` those passed by keyword;
    `attrs` the attributes read, called or overridden; `value_type` the type of a constant.
    """

    symbol: str
    use: str
    args: tuple[str, ...] | None = None
    kwargs: tuple[str, ...] = ()
    attrs: tuple[str, ...] = ()
    value_type: type | None = None


_RUN_LAUNCHER_HOOKS = (
    "launch_run",
    "terminate",
    "supports_check_run_worker_health",
    "check_run_worker_health",
    "supports_resume_run",
    "get_run_worker_debug_info",
    "dispose",
    "register_instance",
    "has_instance",
    "_instance",
)
_CONFIGURABLE = ("inst_data", "config_type", "from_config_value")

RELIED_UPON: tuple[Internal, ...] = (
    # Classes configured in dagster.yaml
    Internal("dagster._serdes:ConfigurableClass", "the base class of both plugins", attrs=_CONFIGURABLE),
    Internal(
        "dagster._serdes.config_class:ConfigurableClassData",
        "the inst_data of both plugins and the instance ref's classes",
        attrs=("module_name",),
    ),
    Internal("dagster._config.config_schema:UserConfigSchema", "the return type of config_type"),
    # Run launcher
    Internal(
        "dagster._core.launcher.base:RunLauncher",
        "the base class of WarmRunLauncher",
        attrs=_RUN_LAUNCHER_HOOKS,
    ),
    Internal(
        "dagster._core.launcher.base:LaunchRunContext", "the run being launched", attrs=("dagster_run",)
    ),
    Internal(
        "dagster._core.launcher.base:CheckRunHealthResult",
        "the answer of check_run_worker_health",
        args=("status", "msg"),
        kwargs=("run_worker_id",),
    ),
    Internal(
        "dagster._core.launcher.base:WorkerStatus",
        "the worker states of a health check",
        attrs=("RUNNING", "SUCCESS", "FAILED"),
    ),
    Internal(
        "dagster:DefaultRunLauncher",
        "the fallback launcher, attached to the instance by hand",
        args=(),
        attrs=("register_instance", "launch_run", "terminate", "dispose"),
    ),
    Internal(
        "dagster._core.storage.tags:GRPC_INFO_TAG",
        "the tag that marks a run launched through the code server",
        value_type=str,
    ),
    Internal(
        "dagster._core.code_pointer:ModuleCodePointer",
        "the module of a run's code location",
        attrs=("module", "working_directory"),
    ),
    Internal(
        "dagster._core.code_pointer:PackageCodePointer",
        "the package of a run's code location",
        attrs=("module", "working_directory"),
    ),
    Internal("dagster:DagsterRun", "a run's code origin", attrs=("job_code_origin",)),
    Internal(
        "dagster._core.origin:JobPythonOrigin", "a run's repository origin", attrs=("repository_origin",)
    ),
    Internal(
        "dagster._core.origin:RepositoryPythonOrigin",
        "a run's code pointer and interpreter",
        attrs=("code_pointer", "executable_path"),
    ),
    Internal("dagster:DagsterInstance.get_ref", "the ref sent to the warm process", args=()),
    Internal(
        "dagster:DagsterInstance.report_engine_event",
        "the launcher's engine events",
        args=("message", "dagster_run"),
        kwargs=("cls",),
    ),
    Internal(
        "dagster:DagsterInstance.report_run_canceling",
        "marking a run CANCELING before interrupting it",
        args=("run",),
    ),
    Internal("dagster._check:str_param", "the run_id check of terminate", args=("obj", "param_name")),
    # Run worker
    Internal(
        "dagster._cli.api:_execute_run_command_body",
        "what a run worker executes",
        args=("run_id", "instance", "write_stream_fn"),
        kwargs=("set_exit_code_on_failure",),
    ),
    Internal(
        "dagster._core.instance:InstanceRef",
        "the instance ref and its configured classes",
        attrs=("_fields",),
    ),
    Internal("dagster:DagsterInstance.from_ref", "the run worker's instance", args=("instance_ref",)),
    Internal("dagster._utils.interrupts:capture_interrupts", "the SIGINT handling of a run worker", args=()),
    Internal(
        "dagster:DagsterInstance.add_run_tags",
        "the run worker's and the launcher's tags",
        args=("run_id", "new_tags"),
    ),
    Internal(
        "dagster._core.storage.tags:HIDDEN_TAG_PREFIX",
        "the prefix that keeps the run worker's tag out of the UI",
        value_type=str,
    ),
    # Run coordinator
    Internal(
        "dagster:QueuedRunCoordinator",
        "the base class of IdempotentQueuedRunCoordinator",
        attrs=(
            "config_type",
            "from_config_value",
            "submit_run",
            "get_run_queue_config",
            "_instance",
            "_logger",
        ),
    ),
    Internal(
        "dagster._core.run_coordinator.queued_run_coordinator:RunQueueConfig",
        "what get_run_queue_config returns",
    ),
    Internal("dagster:DagsterEvent.job_enqueue", "putting an orphaned run back in the queue", args=("run",)),
    Internal(
        "dagster:DagsterInstance.get_records_for_run",
        "when an orphaned run was marked STARTING",
        args=("run_id", "cursor", "of_type", "limit", "ascending"),
    ),
    Internal(
        "dagster:DagsterInstance.report_dagster_event",
        "reporting the enqueue event of an orphaned run",
        args=("dagster_event",),
        kwargs=("run_id",),
    ),
    Internal(
        "dagster:SubmitRunContext",
        "the run being submitted, and the workspace it was launched from",
        attrs=("dagster_run", "workspace"),
    ),
    Internal(
        "dagster._core.workspace.context:BaseWorkspaceRequestContext",
        "the asset graph of the workspace a run was launched from",
        attrs=("asset_graph",),
    ),
    Internal(
        "dagster._core.definitions.assets.graph.remote_asset_graph:RemoteWorkspaceAssetGraph.get_repo_scoped_node",
        "an asset as the run's repository declares it",
        args=("key", "repository_selector"),
    ),
    Internal(
        "dagster._core.definitions.assets.graph.remote_asset_graph:RemoteRepositoryAssetNode",
        "an asset's partitions definition",
        attrs=("partitions_def",),
    ),
    Internal(
        "dagster._core.remote_origin:RemoteRepositoryOrigin.get_selector", "the run's repository", args=()
    ),
    Internal(
        "dagster:DagsterRun",
        "a run's execution plan",
        attrs=("execution_plan_snapshot_id", "remote_job_origin"),
    ),
    Internal(
        "dagster:DagsterInstance.get_execution_plan_snapshot",
        "the execution plan of a submitted run",
        args=("snapshot_id",),
    ),
    Internal(
        "dagster._core.snap.execution_plan_snapshot:ExecutionPlanSnapshot",
        "the assets a run's plan materializes",
        attrs=("asset_selection",),
    ),
    Internal(
        "dagster._core.definitions.partitions.context:partition_loading_context",
        "checking a dynamic partition against the instance",
        kwargs=("dynamic_partitions_store",),
        args=(),
    ),
    Internal(
        "dagster._core.storage.event_log.base:EventLogStorage.get_pool_limits",
        "reading the concurrency pools' limits",
        args=(),
    ),
    Internal(
        "dagster._core.storage.event_log.base:EventLogStorage.set_concurrency_slots",
        "setting a concurrency pool's limit",
        args=("concurrency_key", "num"),
    ),
    Internal("dagster._core.storage.event_log.base:PoolLimit", "a pool's limit", attrs=("name", "limit")),
    Internal(
        "dagster_shared.error:SerializableErrorInfo",
        "the error a refused launch is answered with",
        kwargs=("message", "stack", "cls_name"),
        args=(),
    ),
    Internal(
        "dagster_graphql.implementation.utils:UserFacingGraphQLError",
        "answering a refused launch with a typed error (HTTP 200) instead of a server error",
        args=("error",),
        attrs=("error",),
    ),
    Internal(
        "dagster_graphql.schema.errors:GraphenePythonError",
        "the typed error a refused launch is answered with",
        args=("error_info",),
    ),
    Internal(
        "dagster:DagsterInstance.get_runs",
        "finding the earlier runs of an idempotency key",
        args=("filters",),
        kwargs=("ascending",),
    ),
)
