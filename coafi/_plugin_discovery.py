"""Skip pydantic's plugin discovery where the functions switch plugins off.

pydantic looks for plugins (the ``pydantic`` entry-point group) when it builds its first model. Its loader,
``pydantic.plugin._loader``, imports ``importlib.metadata`` at module level, and that import alone pulls in
``email``, ``zipfile``, ``pathlib``, ``socket`` and more: about 20 ms of every function's cold start on Lambda's
python3.12 (50 ms on its own; ``bench/cold_start.py``). It does so even when pydantic's documented switch
``PYDANTIC_DISABLE_PLUGINS`` turns every plugin off, which COAFI's functions do (their environment:
``infra/constructs/core.py``).

When that switch is on (``__all__``, ``1`` or ``true``, the values pydantic honours) and the loader is not imported
yet, :func:`skip_plugin_discovery` registers a stand-in loader whose ``get_plugins()`` returns no plugins: what
pydantic's own loader returns under the same switch, without the import. ``import coafi`` calls it, so it takes
effect for every model COAFI's code builds. Anywhere else (the CLI, tests, users' processes, which may use
plugins) nothing changes. ``tests/unit/test_plugin_discovery.py`` fails if pydantic stops loading its plugins
through that module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from types import ModuleType

#: The values of ``PYDANTIC_DISABLE_PLUGINS`` for which pydantic's own ``get_plugins()`` returns no plugins.
DISABLE_ALL = frozenset({"__all__", "1", "true"})
LOADER = "pydantic.plugin._loader"


def _no_plugins() -> tuple[()]:
    return ()


def skip_plugin_discovery(environ: Mapping[str, str] = os.environ) -> bool:
    """Register the stand-in loader if plugins are switched off and pydantic has not loaded its own yet; whether
    it did."""
    if environ.get("PYDANTIC_DISABLE_PLUGINS") not in DISABLE_ALL or LOADER in sys.modules:
        return False
    loader = ModuleType(LOADER, "pydantic's plugin loader when PYDANTIC_DISABLE_PLUGINS switches every plugin off "
                                "(coafi._plugin_discovery)")
    loader.get_plugins = _no_plugins  # type: ignore[attr-defined]
    sys.modules[LOADER] = loader
    return True
