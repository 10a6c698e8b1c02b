"""Settings for the whole test suite."""

from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.cli.nodes import stop_pids

# Hypothesis tests check correctness, not speed (benchmarks live in misc/benchmarks/): its default
# 200 ms deadline per example failed them on a loaded machine.
settings.register_profile("lafs", deadline=None)
settings.load_profile("lafs")


@pytest.fixture
def started_pids() -> Iterator[list[int]]:
    """PIDs of the nodes a test started (`tests.cli.nodes.start_node`); exactly those are stopped after it."""
    pids: list[int] = []
    yield pids
    stop_pids(pids)
