"""The CDK app of COAFI: the stack and the constructs it composes (see docs/ARCHITECTURE.md, "CDK app")."""

from infra.stack import CoafiStack

__all__ = ["CoafiStack"]
