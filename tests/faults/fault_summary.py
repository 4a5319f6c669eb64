"""pytest plugin: the fault suite's ONE summary line, also when pytest-xdist runs it.

Registered by the root ``tests/conftest.py``. Each worker hands its tally to the
controller in ``workeroutput``; the controller (or a plain run) prints the merged line.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fault_support import TALLY


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker: pass the tally to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["faults_tally"] = json.dumps(TALLY.to_dict())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the xdist controller: add a finished worker's tally."""
    data = getattr(node, "workeroutput", {}).get("faults_tally")
    if data:
        TALLY.merge(json.loads(data))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the suite's one summary line (only when a fault test ran)."""
    if TALLY.tests and getattr(terminalreporter.config, "workeroutput", None) is None:
        terminalreporter.write_line(TALLY.line())
