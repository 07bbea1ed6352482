"""LocalStack start-up hooks of the COAFI plugin (entry points in pyproject.toml)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from localstack.runtime import hooks

from coafi_localstack_plugin.asl_fixes import fix_parallel_error_names

LOG = logging.getLogger(__name__)
_STOP = threading.Event()


@hooks.on_infra_start()  # type: ignore[untyped-decorator]
def coafi_asl_fixes() -> None:
    """Make Parallel branch failures in the States namespace reach Catch, as on AWS (see asl_fixes)."""
    if fix_parallel_error_names("localstack.services.stepfunctions"):
        LOG.info("coafi: Step Functions Parallel error names patched to match AWS")
    else:
        LOG.warning("coafi: Step Functions Parallel not found; States.* branch errors may crash executions")


@hooks.on_infra_start()  # type: ignore[untyped-decorator]
def coafi_emf_metrics() -> None:
    """Turn EMF documents in Lambda logs into CloudWatch metrics, which LocalStack never does (see emf)."""
    if os.environ.get("COAFI_EMF_METRICS", "1") == "0":
        return
    from coafi_localstack_plugin.emf_hook import install

    if install() is not None:
        LOG.info("coafi: EMF documents in Lambda logs become CloudWatch metrics")
    else:
        LOG.warning("coafi: LocalStack's Lambda log handler not found; EMF metrics are not extracted")


@hooks.on_infra_ready()  # type: ignore[untyped-decorator]
def coafi_fire_schedules() -> None:
    """Fire due EventBridge Scheduler schedules, which LocalStack stores but never fires (see schedules)."""
    if os.environ.get("COAFI_FIRE_SCHEDULES", "1") == "0":
        return
    import boto3  # type: ignore[import-untyped]

    from coafi_localstack_plugin.schedules import Clock, LocalScheduler

    endpoint = "http://" + os.environ.get("GATEWAY_LISTEN", "127.0.0.1:4566").split(",")[0]
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                    region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = session.client(service, endpoint_url=endpoint)
        return clients[service]

    clock_file = os.environ.get("COAFI_CLOCK_FILE")
    state_file = os.environ.get("COAFI_SCHEDULES_STATE_FILE")
    scheduler = LocalScheduler(client, Clock(Path(clock_file) if clock_file else None),
                               Path(state_file) if state_file else None)
    threading.Thread(target=scheduler.run_forever, args=(_STOP,), name="coafi-schedules", daemon=True).start()
    LOG.info("coafi: firing EventBridge Scheduler schedules locally (clock file %s)", clock_file)


@hooks.on_infra_shutdown()  # type: ignore[untyped-decorator]
def coafi_stop_schedules() -> None:
    _STOP.set()
