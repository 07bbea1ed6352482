"""The workflow engine API (the design's WorkflowEngineInterface): see docs/engine-api.md."""
