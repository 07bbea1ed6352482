"""Saga compensation, ``type: schedule`` steps and dead-letter queues (docs/saga-and-dlq.md).

- ``coafi.saga.definitions``: the ``compensate`` field and the ``schedule`` step's parameters, checked.
- ``coafi.saga.compiler``: the states the ASL compiler adds for them.
- ``coafi.saga.ops``: what the state function does for them (plan compensations, record one that failed,
  schedule a step's task).
- ``coafi.saga.dlq``: ``coafi dlq ls|show|redrive``; ``coafi.saga.redrive``: ``coafi redrive EXECUTION``.
"""

#: The state function's ops for compensation and schedule steps (handled by ``coafi.saga.ops``, which the state
#: function imports on the first of them).
STATE_OPS = frozenset({"compensations", "compensation-failed", "schedule"})
