"""A project outside the repository uses the pytest plugin after a plain ``pip install``.

The project is built in a temp dir: a fresh virtualenv, the package installed into it by
pip (no conftest, no ``pytest_plugins`` line), and ``examples/test_with_plugin.py`` as
its test file. Its tests must pass and leave no container, namespace or runtime state.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = re.compile(r"^t-[0-9a-f]{12}(\.jsonl)?$")
BUILD_LEFTOVERS = (
    "build",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    ".pytest_cache",
)
STATE_ROOTS = [
    Path("/run/libcontainerd"),
    Path("/var/lib/libcontainerd"),
    Path("/run/runc"),
    Path("/run/containerd"),
    Path("/sys/fs/cgroup"),
]


def _namespace_paths(*roots: Path) -> set[Path]:
    """Every path two levels deep or less under ``roots`` named like a plugin namespace."""
    found = set()
    for root in roots:
        for depth in ("*", "*/*", "*/*/*"):
            found.update(p for p in root.glob(depth) if NAMESPACE.match(p.name))
    return found


@pytest.mark.runtime
def test_sample_project_uses_the_fixtures(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("runc") is None:
        pytest.skip("the sample project runs containers: needs root and runc")
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "examples" / "test_with_plugin.py", project / "test_sample.py")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The dependencies (pytest, grpcio ...) come from this environment; libcontainerd
    # itself is built and installed by pip from the source tree, as a user would.
    (Path(next(venv.glob("lib/python*/site-packages"))) / "deps.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n"
    )
    # Built from a copy: a build writes its own files (build/, *.egg-info) into the tree it
    # builds, and the checkout must stay as it was (the next lint run would read them).
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*BUILD_LEFTOVERS, ".venv*", ".git"))
    had_build = (REPO / "build").exists()
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(source)],
        check=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert (REPO / "build").exists() == had_build
    before = _namespace_paths(*STATE_ROOTS)
    done = subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:randomly",
         f"--basetemp={tmp_path / 'basetemp'}", "test_sample.py"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "LIBCONTAINERD"))},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout, done.stdout
    installed = subprocess.run(
        [str(python), "-c", "import libcontainerd; print(libcontainerd.__file__)"],
        capture_output=True, text=True, check=True, cwd=project,
    )  # fmt: skip
    assert str(venv) in installed.stdout  # the pip-installed copy, not the source tree
    assert _namespace_paths(*STATE_ROOTS) - before == set()
    assert _namespace_paths(tmp_path / "basetemp") == set()
