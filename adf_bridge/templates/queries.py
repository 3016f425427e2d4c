"""The GraphQL documents an ADF pipeline sends (through the gateway, which allows exactly these shapes:
adf_bridge/gateway/policy.py)."""

from __future__ import annotations

LAUNCH_QUERY = """mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message reason } }
    ... on Error { message }
  }
}"""
STATUS_QUERY = """query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status startTime endTime }
    ... on Error { message }
  }
}"""
# Only failure events carry fields, the others come back as {"__typename": ...}: the answer stays far
# below ADF's 4 MB limit for a Web activity response even for runs with many log events.
FAILURE_QUERY = """query RunFailure($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent { stepKey message error { message causes { message } } }
        ... on RunFailureEvent { message }
        ... on RunCanceledEvent { message }
      }
    }
    ... on Error { message }
  }
}"""
ADD_PARTITION_QUERY = """mutation AddPartition($repositorySelector: RepositorySelector!, $partitionsDefName: String!, $partitionKey: String!) {
  addDynamicPartition(repositorySelector: $repositorySelector, partitionsDefName: $partitionsDefName, partitionKey: $partitionKey) {
    __typename
    ... on Error { message }
  }
}"""
