"""E2E fixtures: `running_stack(...)` brings up simulator + dagster-webserver + dagster-daemon as
subprocesses and always tears every process group down; figures go to the terminal summary."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from amc_pipeline_tests.e2e.flow import REPORT
from amc_pipeline_tests.e2e.stack import Stack

#: Log tails of stacks torn down after a failure, printed in the terminal summary.
FAILURE_LOGS: list[str] = []


@contextmanager
def running_stack(request: pytest.FixtureRequest, root: Path, *, daemon: bool = True,
                  **kwargs: Any) -> Iterator[Stack]:
    """A started stack; on exit (normal or not) every process group is killed, and when a test of the
    session failed meanwhile (or startup failed) the tail of each process's log is kept for the summary."""
    stack = Stack(root=root, **kwargs)
    failed_before = request.session.testsfailed
    ok = False
    try:
        stack.start(daemon=daemon)
        yield stack
        ok = True
    finally:
        try:
            if not ok or request.session.testsfailed > failed_before:
                FAILURE_LOGS.append(f"===== stack at {root} =====\n{stack.dump_logs(80)}")
        finally:
            stack.stop()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001 - pytest's signature
    if REPORT:
        terminalreporter.section("amc-pipeline e2e figures")
        for line in REPORT:
            terminalreporter.write_line(line)
    if FAILURE_LOGS:
        terminalreporter.section("amc-pipeline e2e process logs (tail)")
        for block in FAILURE_LOGS:
            terminalreporter.write_line(block)
