"""A stand-in for the Lambda context object, with what Powertools and handlers read from it."""

from __future__ import annotations

import time
import uuid

from coafi import aws

ACCOUNT = "123456789012"


class FakeLambdaContext:
    """What Powertools reads from a Lambda context; the remaining time counts down from ``remaining_ms``."""

    def __init__(self, name: str = "coafi-function", remaining_ms: int = 30_000) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{aws.region()}:{ACCOUNT}:function:{name}"
        self.memory_limit_in_mb = 256
        self.aws_request_id = f"req-{uuid.uuid4()}"
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)
