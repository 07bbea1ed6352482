"""``coafi redrive EXECUTION``: run a failed execution again from where it failed.

On AWS this is Step Functions' ``RedriveExecution``: the same execution (same ARN, same input) continues from
its unsuccessful states; states that succeeded are not run again. The execution must be FAILED, TIMED_OUT or
ABORTED and have ended within 14 days. Caveat (not verified on AWS from here): a COAFI machine catches a step's
error in ``coafi.run`` and ends in its ``coafi.fail.*`` Fail state, so what Step Functions counts as the
unsuccessful state may be that Fail state rather than the step; check the redriven execution's history.

LocalStack 2026.3 and moto do not implement ``RedriveExecution`` (their API stubs exist, their providers have no
handler: the call fails with a "not implemented" error). ``restart=True`` then does the honest fallback: a NEW
execution of the same state machine with the same input, named ``<name>-redrive-<n>``, that resumes from the
failure using the recorded state (coafi.saga.resume): actions that succeeded in the failed execution and were not
undone by a compensation are not run again (their recorded outputs are reused); everything else runs again. The
new execution has its own record (``metadata.redriveOf`` = the failed one) and history.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel

from coafi import aws
from coafi.saga import resume
from coafi.state.store import StateStore, now_iso

REDRIVABLE = ("FAILED", "TIMED_OUT", "ABORTED")
MAX_NAME = 80
_NOT_IMPLEMENTED = ("not yet implemented", "not implemented", "pro feature")


class RedriveError(Exception):
    """The execution cannot be redriven as asked (the message says why and what to do)."""


class RedriveNotSupported(RedriveError):
    """The endpoint has no RedriveExecution (LocalStack 2026.3, moto)."""


class RedriveResult(BaseModel):
    mode: Literal["redriven", "restarted"]
    executionArn: str
    redriveOf: str
    detail: str = ""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _not_implemented(exc: Exception) -> bool:
    if isinstance(exc, NotImplementedError):
        return True
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = str(exc).lower()
        if status == 501 or _code(exc) in ("NotImplemented", "UnknownOperationException"):
            return True
        return _code(exc) == "InternalFailure" and any(marker in text for marker in _NOT_IMPLEMENTED)
    return False


def redrive_execution(execution_arn: str, *, restart: bool = False, client: Any = None,
                      store: StateStore | None = None) -> RedriveResult:
    """RedriveExecution; where the endpoint lacks it and ``restart``, a restart (see the module docstring). With
    ``store`` (the stack's state table) the restart resumes from the failure; without it every step runs again."""
    sfn = client or aws.client("stepfunctions")
    try:
        description = sfn.describe_execution(executionArn=execution_arn)
    except ClientError as exc:
        raise RedriveError(f"execution {execution_arn}: {exc}") from None
    status = str(description["status"])
    if status not in REDRIVABLE:
        raise RedriveError(f"execution {execution_arn} is {status}; only {', '.join(REDRIVABLE)} executions can be "
                           "redriven")
    try:
        response = sfn.redrive_execution(executionArn=execution_arn)
        return RedriveResult(mode="redriven", executionArn=execution_arn, redriveOf=execution_arn,
                             detail=f"redriven at {response.get('redriveDate')}")
    except (ClientError, NotImplementedError) as exc:
        if not _not_implemented(exc):
            raise RedriveError(f"Step Functions refused to redrive {execution_arn}: {exc}") from None
        if not restart:
            raise RedriveNotSupported(
                f"this endpoint does not implement RedriveExecution ({exc}); LocalStack 2026.3 and moto lack it. "
                "Pass --restart to start a new execution of the same state machine with the same input instead "
                "(every step runs again)") from None
    return _restart(sfn, description, store)


def _restart(sfn: Any, description: dict[str, Any], store: StateStore | None) -> RedriveResult:
    machine = str(description["stateMachineArn"])
    base = str(description["name"])
    names = {e["name"] for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine)
             for e in page["executions"]}
    n = 1
    while True:
        suffix = f"-redrive-{n}"
        name = base[: MAX_NAME - len(suffix)] + suffix
        if name not in names:
            break
        n += 1
    raw_input = description.get("input") or "{}"
    failed = str(description["executionArn"])
    if store is not None:
        try:
            record = store.get_execution(failed)
        except ClientError as exc:
            raise RedriveError(f"cannot read the state table {store.table_name}: {exc}") from None
        if record is None:
            raise RedriveError(f"execution {failed} has no record in the state table {store.table_name}: not a COAFI "
                               "workflow of this stack, or its record expired")
        resume.prepare_restart(store, failed, resume.execution_arn_for(machine, name),
                               workflow_id=record.workflowId, workflow_version=record.workflowVersion,
                               raw_input=json.loads(raw_input), start_time=now_iso())
    started = sfn.start_execution(stateMachineArn=machine, name=name, input=raw_input)
    detail = ("RedriveExecution is not available here: started a new execution with the same input that reuses the "
              "outputs of the steps that succeeded and were not compensated" if store is not None else
              "RedriveExecution is not available here: started a new execution with the same input; every step "
              "runs again")
    return RedriveResult(mode="restarted", executionArn=str(started["executionArn"]), redriveOf=failed, detail=detail)
