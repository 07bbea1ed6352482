"""Load on the embedded LocalStack, sized for the test tier: many sample executions, every one accounted for.

The full run (200 executions, and 50 started in the same instant) is ``bench/local_load.py``; this test runs the
same code on ``COAFI_E2E_LOAD_EXECUTIONS`` executions (default 20, 5 at a time) so the suite stays a few minutes
long on a small machine. Every execution must succeed, and Step Functions, the state table (record, steps, the
``byWorkflowStatus`` index), both histories and the Lambda invocation metrics must account for each one.
"""

from __future__ import annotations

import os

import pytest

from bench.local_load import WORKFLOW, account, metrics_before, run_window, workflow_functions
from coafi.deploy import StackOutputs

pytestmark = pytest.mark.localstack

EXECUTIONS = int(os.environ.get("COAFI_E2E_LOAD_EXECUTIONS", "20"))
IN_FLIGHT = 5


def test_every_execution_of_a_load_run_is_accounted_for(stack: StackOutputs) -> None:
    machine = stack.workflow_arn(WORKFLOW)
    before = metrics_before(workflow_functions(machine), WORKFLOW)
    described = run_window(machine, EXECUTIONS, IN_FLIGHT)
    # other tests of the session may still drive the shared state function (a schedule firing, say): the metric
    # must grow by at least what these executions scheduled
    acc = account(stack.state_table_name, WORKFLOW, described, before, exact_metrics=False)
    assert acc.problems == []
    assert acc.executions == EXECUTIONS
    assert acc.succeeded == acc.state_records == acc.indexed == EXECUTIONS
    assert acc.coafi_histories == acc.sfn_histories == EXECUTIONS
    assert sum(acc.lambda_tasks.values()) >= 8 * EXECUTIONS  # 6 actions + start + finish per execution
    assert all(acc.lambda_invocations[f] >= n for f, n in acc.lambda_tasks.items())
