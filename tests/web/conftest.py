"""Browser tests: say where a failed test's screenshots are."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome: Any = yield
    report = outcome.get_result()
    shots = getattr(item.session, "lafs_screenshot_dir", None)
    if report.failed and shots is not None:
        report.sections.append(("screenshots", f"the pages' screenshots are in {shots}"))
