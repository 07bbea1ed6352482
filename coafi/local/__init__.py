"""Embedded local cloud for COAFI: LocalStack on the host (no Docker, no token), see :mod:`coafi.local.harness`.

``from coafi.local import up, down, status`` - resolved lazily so that importing this package costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coafi.local.harness import (
        DEFAULT_ENDPOINT,
        DEFAULT_REGION,
        LocalCloudError,
        LocalCloudInfo,
        LocalCloudStatus,
        down,
        status,
        up,
    )

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_REGION",
    "LocalCloudError",
    "LocalCloudInfo",
    "LocalCloudStatus",
    "down",
    "status",
    "up",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from coafi.local import harness

        return getattr(harness, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
