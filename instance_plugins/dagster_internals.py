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

Run coordinator (run_coordinator)
- `QueuedRunCoordinator` (a public class), subclassed: its `config_type` (a dict of Fields, extended),
  `from_config_value` (builds `cls(...)`, so it builds the subclass), `submit_run`, and its private
  `_instance` and `_logger`. Nothing public hooks into the submission of a run.
- `SubmitRunContext.dagster_run`, `DagsterInstance.get_runs` (not marked public): the run submitted,
  and the earlier runs with the same idempotency key.
- `QueuedRunCoordinator.get_run_queue_config` (overridden; returns a `RunQueueConfig`), which the
  daemon calls at every dequeue iteration: the moment to put runs orphaned in STARTING back in the
  queue, with `DagsterEvent.job_enqueue` and `DagsterInstance.report_dagster_event`, as the daemon's
  own dequeuer re-queues a run whose launch failed. Nothing public runs code in the daemon's loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._check import str_param
from dagster._config.config_schema import UserConfigSchema
from dagster._core.code_pointer import ModuleCodePointer, PackageCodePointer
from dagster._core.instance import InstanceRef
from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._core.run_coordinator.queued_run_coordinator import RunQueueConfig
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._serdes import ConfigurableClass
from dagster._serdes.config_class import ConfigurableClassData
from dagster._utils.interrupts import capture_interrupts

__all__ = [
    "EXECUTE_RUN_MODULE",
    "GRPC_INFO_TAG",
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
        "dagster:DagsterInstance.report_dagster_event",
        "reporting the enqueue event of an orphaned run",
        args=("dagster_event",),
        kwargs=("run_id",),
    ),
    Internal("dagster:SubmitRunContext", "the run being submitted", attrs=("dagster_run",)),
    Internal(
        "dagster:DagsterInstance.get_runs",
        "finding the earlier runs of an idempotency key",
        args=("filters",),
        kwargs=("ascending",),
    ),
)
