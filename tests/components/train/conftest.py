"""Per test: remember the processes already running, so the no-leftover checks count only this test's."""

import pytest

from tests import distributed_fixtures


@pytest.fixture(autouse=True)
def _preexisting_children():
    distributed_fixtures.PREEXISTING_CHILDREN.clear()
    distributed_fixtures.PREEXISTING_CHILDREN.update(child.pid for child in distributed_fixtures.live_descendants())
    yield
    distributed_fixtures.PREEXISTING_CHILDREN.clear()
