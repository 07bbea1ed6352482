"""Fixtures of the integration tier. ``resources`` and ``scheduler`` need a ``cloud`` fixture (an
``InProcessCloud``), which each module defines with the definitions it runs."""

from __future__ import annotations

import pytest

from coafi.tasks import TaskScheduler
from coafi.tasks.testing import TaskResources, create_task_resources
from coafi.testing import InProcessCloud
from coafi.testing.inprocess import TABLE


@pytest.fixture
def resources(cloud: InProcessCloud) -> TaskResources:
    """The task queue, its dead-letter queue and the schedule group, in the module's in-process cloud."""
    return create_task_resources()


@pytest.fixture
def scheduler(resources: TaskResources) -> TaskScheduler:
    return TaskScheduler(resources.settings(TABLE))
