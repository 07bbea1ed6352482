"""``coafi deploy``: drive the pinned CDK CLI (``cdklocal`` for the local cloud) from Python."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

LOCAL_ACCOUNT = "000000000000"
DEFAULT_STACK = "Coafi"


class DeployError(RuntimeError):
    """A deployment step failed; the message says which and what to do."""


class StackOutputs(BaseModel):
    """What the deployed stack tells its users (CloudFormation outputs of the Coafi stack)."""

    model_config = ConfigDict(populate_by_name=True)

    stack_name: str
    state_table_name: str = Field(alias="StateTableName")
    event_bus_name: str = Field(alias="EventBusName")
    task_queue_url: str = Field("", alias="TaskQueueUrl")
    schedule_group_name: str = Field("", alias="ScheduleGroupName")
    state_function_arn: str = Field("", alias="StateFunctionArn")
    workflow_arns: dict[str, str] = Field(default_factory=dict, alias="WorkflowArns")

    def workflow_arn(self, workflow_id: str) -> str:
        try:
            return self.workflow_arns[workflow_id]
        except KeyError:
            known = ", ".join(sorted(self.workflow_arns)) or "none"
            raise DeployError(f"workflow '{workflow_id}' is not deployed in {self.stack_name} (deployed: {known})") \
                from None


def local_environment(endpoint: str) -> dict[str, str]:
    """Environment for AWS SDKs and the CDK CLI pointed at a LocalStack endpoint."""
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_S3_FORCE_PATH_STYLE": "1",
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "CDK_DEFAULT_ACCOUNT": LOCAL_ACCOUNT,
        "CDK_DEFAULT_REGION": region,
    }


def _cli_environment(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env.update({
        "CDK_DISABLE_VERSION_CHECK": "1",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    })
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    return env


def ensure_node_tools(project_root: Path) -> Path:
    """node_modules/.bin with the pinned CDK CLI; installed from package-lock.json when missing."""
    bin_dir = project_root / "node_modules" / ".bin"
    if not (bin_dir / "cdk").exists() or not (bin_dir / "cdklocal").exists():
        npm = shutil.which("npm")
        if npm is None:
            raise DeployError("npm is not on PATH; install Node.js 20+ to deploy (the CDK CLI is an npm package)")
        command = [npm, "ci", "--no-audit", "--no-fund"] if (project_root / "package-lock.json").exists() \
            else [npm, "install", "--no-audit", "--no-fund"]
        _run(command, cwd=project_root, env=dict(os.environ), what="installing the CDK CLI from package.json")
    return bin_dir


def _run(command: list[str], *, cwd: Path, env: dict[str, str], what: str) -> None:
    print(f"$ {' '.join(command)}", file=sys.stderr, flush=True)
    completed = subprocess.run(command, cwd=cwd, env=env, check=False)
    if completed.returncode != 0:
        raise DeployError(f"{what} failed (exit {completed.returncode}); see the output above")


def deploy(*, local: bool, project_root: Path, stack_name: str = DEFAULT_STACK) -> StackOutputs:
    """Synthesize and deploy the CDK app; returns the stack's outputs.

    ``local``: deploy to ``AWS_ENDPOINT_URL`` when set, else to the embedded local cloud (started if needed).
    Otherwise: real AWS with the normal credentials chain (bootstrap your account once with ``cdk bootstrap``).
    """
    bin_dir = ensure_node_tools(project_root)
    if local:
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        if not endpoint:
            from coafi.local import harness

            endpoint = harness.up(project_root=project_root).endpoint
        sdk_env = local_environment(endpoint)
        os.environ.update(sdk_env)
        _reset_clients()
        env = _cli_environment(sdk_env)
        cli = str(bin_dir / "cdklocal")
        if not _stack_exists("CDKToolkit"):
            region = sdk_env["AWS_DEFAULT_REGION"]
            _run([cli, "bootstrap", f"aws://{LOCAL_ACCOUNT}/{region}", "--no-notices"], cwd=project_root, env=env,
                 what="bootstrapping the local cloud for CDK")
    else:
        env = _cli_environment({})
        cli = str(bin_dir / "cdk")
    _run([cli, "deploy", stack_name, "--require-approval", "never", "--no-notices", "--progress", "events",
          "--context", f"coafi:stackName={stack_name}"], cwd=project_root, env=env,
         what=f"deploying stack {stack_name}")
    if local:  # a LocalStack without COAFI's plugin skips custom resources: run the registrar directly then
        from coafi.engine.registrar import sync_deployed_stack

        sync_deployed_stack(stack_name)
    return read_outputs(stack_name)  # workflow versions and error policies are registered by the stack itself


def _reset_clients() -> None:
    from coafi import aws

    aws._cached.cache_clear()


def _stack_exists(name: str) -> bool:
    from coafi import aws

    cfn = aws.client("cloudformation")
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except cfn.exceptions.ClientError:
        return False
    return bool(stacks) and not str(stacks[0]["StackStatus"]).startswith("DELETE")


def read_outputs(stack_name: str = DEFAULT_STACK) -> StackOutputs:
    """The outputs of a deployed stack, from CloudFormation."""
    from coafi import aws

    cfn = aws.client("cloudformation")
    try:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except cfn.exceptions.ClientError as exc:
        raise DeployError(f"stack {stack_name} is not deployed here ({exc}); run `coafi deploy --local`") from None
    values: dict[str, Any] = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    if "WorkflowArns" in values:
        values["WorkflowArns"] = json.loads(values["WorkflowArns"])
    return StackOutputs.model_validate({"stack_name": stack_name, **values})
