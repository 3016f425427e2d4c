"""ADF pipeline templates that launch a Dagster job over GraphQL and wait for it, one per job.

Generated from the code location itself (job names, partitioning, run-config defaults), so the
templates cannot drift from the code: `python -m adf_bridge.templates` writes them,
`--check` fails when the checked-in files differ from what the code would generate.

Written under `adf/`:
- `pipelines/<job>.json`: the ADF pipeline resource (`{name, properties}`), what the ADF REST API,
  `Set-AzDataFactoryV2Pipeline` or a Git-integrated factory's `pipeline/` folder take;
- `templates/<pipeline>/<pipeline>.json` + `manifest.json`: the same pipeline as an ARM template with a
  `factoryName` parameter, the layout ADF Studio's "Import pipeline template" reads (zip the folder,
  or pass `--zip DIR`), and that an ARM deployment takes as is;
- `jobs.json`: the jobs manifest (`adf_bridge.jobs_manifest`), what the gateway needs to know about the
  jobs, so that it never loads the code location.

What each pipeline does (see README "Triggering from ADF"):
1. `Launch` (Web, managed identity for `audience`): `launchRun` with the job, `run_config`, the caller's
   `tags` and ADF's own (`adf/pipeline_run_id` = the ADF run id, `adf/pipeline_name`, `adf/factory`;
   `dagster/partition` for a partitioned job; `dagster/max_runtime` = the pipeline's `timeout` less
   five minutes, so run monitoring stops the run, and cancels its remote job, before the wait ends). The Dagster instance's run coordinator treats
   `adf/pipeline_run_id` as an idempotency key (instance_plugins/run_coordinator.py), so ADF retrying the
   activity answers with the run already launched instead of starting a second one.
2. `Check launch` (If): any `__typename` but `LaunchRunSuccess` (Dagster answers HTTP 200 for a failed
   launch) fails the pipeline at once with Dagster's message (`Launch failed`).
3. `Remember run id` (Set Variable), then `Wait for run` (Until: `Get status` = `runOrError`, and `Pause`
   for `poll_interval` seconds while the run is not finished; `timeout` bounds the whole wait).
4. `Check run` (If): a run that ended other than SUCCESS fetches its failure events (`Get failure`,
   `Failure events`) and fails the pipeline with the status and Dagster's error (`Run failed`).

Modules, one concern each: `jobs` (what the code location says about its jobs), `queries` (the GraphQL
documents a pipeline sends), `expressions` (ADF expression building), `activities` (ADF activity
shapes), `pipeline` (one job's pipeline), `arm` (the ARM template and the template-gallery manifest),
`output` (writing and checking the files under `adf/`), `cli` (`python -m adf_bridge.templates`).
"""
