"""COAFI orchestration core: workflow definitions compiled to AWS Step Functions."""

from coafi._plugin_discovery import skip_plugin_discovery

__version__ = "0.1.0"

skip_plugin_discovery()  # a no-op unless PYDANTIC_DISABLE_PLUGINS is set, as in COAFI's functions
