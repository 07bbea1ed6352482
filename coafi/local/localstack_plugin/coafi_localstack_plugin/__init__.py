"""COAFI's LocalStack plugin: a Lambda runtime executor running Python handlers as host subprocesses.

Installed only into the embedded LocalStack's own venv (``.coafi/localstack-venv``) by ``coafi local up``;
selected with ``LAMBDA_RUNTIME_EXECUTOR=coafi``. ``bootstrap.py`` runs inside each function's interpreter.
"""

__version__ = "0.1.0"
