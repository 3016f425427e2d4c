"""What the settings decide about each asset step: its retry policy and its concurrency pool.

Both are properties of the asset's op, so they hold however a run starts (a job, the UI's
*Materialize*, a sensor, ADF). The assets declare defaults in their decorators; the code location
replaces them here from the settings when it builds its Definitions:

- `retry_policy`: the settings' RetryPolicy (`RetrySettings.policy`) for every asset. It retries only
  what may pass: the compute driver fails a step with `allow_retries=False` when retrying cannot help,
  and the asset's own explained failures (`dg.Failure`) are made final (`failing_once`).
- `pool`: the compute target the asset's compute resource (`<role>_compute`) runs on
  (`wiring.concurrency_pool`), so the assets that share a cluster or a Batch pool share its limit;
  the limit travels with the op as the tag `mnist/pool_limit`, which the instance's run coordinator
  sets in Dagster's storage before it queues a run (instance_plugins/run_coordinator.py).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg
from dagster._core.definitions.decorators.op_decorator import DecoratedOpFunction

from orchestration.settings import Settings
from orchestration.settings.compute import ComputeRole
from orchestration.settings.wiring import concurrency_pool, pool_limit
from resources.azure.errors import PermanentAzureError
from resources.compute import WorkloadFailed

POOL_LIMIT_TAG = "mnist/pool_limit"  # the limit of the op's pool, as the code location's settings say


# The resource key of each compute role's backend (orchestration.settings.wiring.resources).
ROLE_OF_RESOURCE: dict[str, ComputeRole] = {
    "ingest_compute": "ingest",
    "training_compute": "training",
    "scoring_compute": "scoring",
}


def compute_role(asset: dg.AssetsDefinition) -> ComputeRole | None:
    """The compute role whose resource the asset uses (None: it runs no workload)."""
    roles: list[ComputeRole] = [
        ROLE_OF_RESOURCE[k] for k in sorted(asset.required_resource_keys) if k in ROLE_OF_RESOURCE
    ]
    if len(roles) > 1:
        raise dg.DagsterInvalidDefinitionError(
            f"asset {asset.key.to_user_string()} uses several compute resources ({', '.join(roles)}): "
            "an op has one concurrency pool"
        )
    return roles[0] if roles else None


def with_step_policies(
    assets: Sequence[dg.AssetsDefinition], settings: Settings
) -> list[dg.AssetsDefinition]:
    """`assets` with the retry policy and the concurrency pool the settings give them."""
    policy = settings.retries.policy()
    built: list[dg.AssetsDefinition] = []
    for asset in assets:
        role = compute_role(asset)
        if role is None:
            built.append(with_op_properties(asset, retry_policy=policy, pool=asset.op.pool, tags={}))
            continue
        pool, limit = concurrency_pool(settings, role), pool_limit(settings, role)
        built.append(
            with_op_properties(asset, retry_policy=policy, pool=pool, tags={POOL_LIMIT_TAG: str(limit)})
        )
    return built


def with_op_properties(
    asset: dg.AssetsDefinition, *, retry_policy: dg.RetryPolicy | None, pool: str | None, tags: dict[str, str]
) -> dg.AssetsDefinition:
    """The asset with its op's retry policy and pool replaced and `tags` added to the op's tags.

    Dagster offers no public replacement of these (`with_attributes` covers the specs, not the op), so
    the op is rebuilt with its own compute function, inputs, outputs and config."""
    op = asset.op
    compute_fn = op.compute_fn
    if isinstance(compute_fn, DecoratedOpFunction):
        compute_fn = DecoratedOpFunction(decorated_fn=failing_once(compute_fn.decorated_fn))
    with warnings.catch_warnings():  # `version` is the op's code version (deprecated name, no other)
        warnings.simplefilter("ignore", DeprecationWarning)
        code_version = op.version
    new_op = dg.OpDefinition(
        compute_fn=compute_fn,
        name=op.name,
        ins={d.name: dg.In.from_definition(d) for d in op.input_defs},
        outs={d.name: dg.Out.from_definition(d) for d in op.output_defs},
        description=op.description,
        config_schema=op.config_schema,
        required_resource_keys=op.required_resource_keys,
        tags={**op.tags, **tags},
        code_version=code_version,
        retry_policy=retry_policy,
        pool=pool,
    )
    return dg.AssetsDefinition.dagster_internal_init(**{**asset.get_attributes_dict(), "node_def": new_op})


def failing_once(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The asset function, with its explained failures made final.

    An asset raises `dg.Failure` to say what is wrong with its inputs or preconditions (no promoted
    model yet, a partition that is no batch): retrying would fail the same way, but Dagster's default
    lets the RetryPolicy retry a Failure. So every Failure but the compute driver's `WorkloadFailed`,
    which decides for itself, fails once, and so does a `PermanentAzureError` (a 4xx, a missing
    setting). Anything else (a transient Azure error, a lost connection) is left to the RetryPolicy."""

    @functools.wraps(fn)
    def explained_failures_are_final(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except WorkloadFailed:
            raise
        except dg.Failure as failure:
            if not failure.allow_retries:
                raise
            raise dg.Failure(
                description=failure.description, metadata=failure.metadata, allow_retries=False
            ) from failure
        except PermanentAzureError as err:
            raise dg.Failure(description=str(err), allow_retries=False) from err

    return explained_failures_are_final
