"""The error handler (issue 5): classification, error policies, circuit breakers and escalation.

- ``coafi.resilience.errors``: typed errors by category (``ThrottlingError``, ``DependencyUnavailable``,
  ``CircuitOpen``, ``InvalidInput``, ``AccessDenied``, ``NotFound``, ``SystemFault``).
- ``coafi.resilience.classification``: ``classify(exc)`` -> transient / permanent / system.
- ``coafi.resilience.policies``: ``ErrorPolicy`` and its parts; ``coafi.resilience.loading`` reads
  ``statemachines/policies/``; ``coafi.resilience.compile`` turns policies into Retry/Catch.
- ``coafi.resilience.circuit``: ``CircuitBreaker``, shared across executions through the state table.
- ``coafi.resilience.escalation``: the ``Escalation`` event; ``coafi.resilience.registry``: policies in DynamoDB.

Importing this package imports none of its modules (Lambda cold start); import the one you need.
"""
