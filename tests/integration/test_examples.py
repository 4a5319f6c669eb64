"""Every script in examples/ runs to completion on this machine (as CI runs them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.py"))


@pytest.mark.runtime
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the examples run real containers, which needs root")
    env = {k: v for k, v in os.environ.items() if k not in ("CONTAINERD_ADDRESS",)}
    env["LIBCONTAINERD_BACKEND"] = "local"  # the embedded default, whatever else runs here
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    if script.stem == "quickstart":
        assert "container says:   hello from a container" in done.stdout
        assert "cleaned up" in done.stdout
