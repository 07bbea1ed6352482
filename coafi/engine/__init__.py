"""The workflow engine API (the design's WorkflowEngineInterface)."""
