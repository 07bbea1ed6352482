"""LocalStack start-up hooks of the COAFI plugin (entry points in pyproject.toml)."""

from __future__ import annotations

import logging

from localstack.runtime import hooks

from coafi_localstack_plugin.asl_fixes import fix_parallel_error_names

LOG = logging.getLogger(__name__)


@hooks.on_infra_start()
def coafi_asl_fixes() -> None:
    """Make Parallel branch failures in the States namespace reach Catch, as on AWS (see asl_fixes)."""
    if fix_parallel_error_names("localstack.services.stepfunctions"):
        LOG.info("coafi: Step Functions Parallel error names patched to match AWS")
    else:
        LOG.warning("coafi: Step Functions Parallel not found; States.* branch errors may crash executions")
