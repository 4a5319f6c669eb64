"""Every script in examples/ runs to completion on this machine (as CI runs them) and
prints what it promises; the example test file passes under pytest with the plugin."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLES = sorted(p for p in EXAMPLES_DIR.glob("*.py") if not p.name.startswith(("_", "test_")))

#: For each example, patterns its output must contain (each a regular expression).
EXPECTED: dict[str, list[str]] = {
    "quickstart": [r"container says:   hello from a container", r"cleaned up"],
    "exec_and_streams": [
        r"stdout: to stdout",
        r"stderr: to stderr",
        r"exec exit code: 7",
        r"stopped with: 0",
        r"cleaned up",
    ],
    "events_callback": [
        r"event: /tasks/start events-0\n",
        r"event: /tasks/exit events-0 exit_code=0",
        r"event: /tasks/exit events-3 exit_code=3",
    ],
    "pull_with_progress": [
        r"pulling 127\.0\.0\.1:\d+/examples/busybox:1",
        r"sha256:[0-9a-f]{12} (done|exists) \d+ bytes",
        r"pulled 127\.0\.0\.1:\d+/examples/busybox:1 \(sha256:",
    ],
    "async_concurrency": [r"20 containers ran concurrently in [\d.]+ s", r"left behind: 0"],
    "restore_after_restart": [
        r"started restored, exiting",
        r"found restored, its task is (running|stopped)",  # stopped on a slow machine
        r"exit code: 0",
        r"logs: finished while nobody watched",
        r"cleaned up",
    ],
    "requested_platform": [
        r'X-Requested-Platform: \{"os":"linux","architecture":"arm","variant":"v7"\}',
        r"header: linux/arm/v7",
        r"parameter: linux/arm/v7",
        r"\n400\n",
    ],
}


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CONTAINERD_ADDRESS",)}
    env["LIBCONTAINERD_BACKEND"] = "local"  # the embedded default, whatever else runs here
    return env


def test_every_example_has_expectations() -> None:
    assert {p.stem for p in EXAMPLES} == set(EXPECTED)


@pytest.mark.runtime
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script: Path) -> None:
    if os.geteuid() != 0 and script.stem != "requested_platform":
        pytest.skip("the examples run real containers, which needs root")
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=_environment(),
        cwd=EXAMPLES_DIR,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for pattern in EXPECTED[script.stem]:
        assert re.search(pattern, done.stdout), f"{pattern!r} not in:\n{done.stdout}"


@pytest.mark.runtime
def test_example_test_file_passes_with_the_plugin(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the example tests run real containers, which needs root")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         f"--basetemp={tmp_path}", str(EXAMPLES_DIR / "test_with_plugin.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=_environment(),
        cwd=EXAMPLES_DIR,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
