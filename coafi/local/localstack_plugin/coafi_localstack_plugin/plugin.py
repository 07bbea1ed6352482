"""plux plugin registering the COAFI executor under ``localstack.lambda.runtime_executor`` (name ``coafi``).

Selected in LocalStack with ``LAMBDA_RUNTIME_EXECUTOR=coafi``. Loading is lazy: the executor module (and its
LocalStack imports) is only imported when LocalStack asks for the executor class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin

if TYPE_CHECKING:
    from coafi_localstack_plugin.executor import CoafiProcessRuntimeExecutor


class CoafiRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    name = "coafi"

    def load(self, *args: Any, **kwargs: Any) -> type[CoafiProcessRuntimeExecutor]:
        from coafi_localstack_plugin.executor import CoafiProcessRuntimeExecutor

        return CoafiProcessRuntimeExecutor
