"""Settings for the whole test suite."""

from hypothesis import settings

# Hypothesis tests check correctness, not speed (benchmarks live in misc/benchmarks/): its default
# 200 ms deadline per example failed them on a loaded machine.
settings.register_profile("lafs", deadline=None)
settings.load_profile("lafs")
