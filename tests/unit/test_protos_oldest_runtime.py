"""The generated modules import and work under the oldest protobuf and grpcio we allow.

The newest versions are what the test environment itself runs; this test builds (once,
cached under ``~/.cache/libcontainerd``) a virtualenv with the floors from
pyproject.toml and imports every generated module there, builds every stub and
round-trips an ``Any``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from libcontainerd._toml import loads as toml_loads

ROOT = Path(__file__).resolve().parents[2]


def _floor(requirement_name: str) -> str:
    project = toml_loads((ROOT / "pyproject.toml").read_text(), what="pyproject.toml")["project"]
    for requirement in project["dependencies"]:
        match = re.fullmatch(rf"{requirement_name}>=([\w.]+)", requirement.replace(" ", ""))
        if match:
            return match.group(1)
    raise AssertionError(f"pyproject.toml has no '{requirement_name}>=' floor")


def _same_release(installed: str, floor: str) -> bool:
    """``4.25.0`` is the release ``4.25`` names."""
    parts = [int(p) for p in installed.split(".")[:3]]
    wanted = [int(p) for p in floor.split(".")]
    return parts[: len(wanted)] == wanted and not any(parts[len(wanted) :])


def _oldest_venv() -> Path:
    pins = [f"protobuf=={_floor('protobuf')}", f"grpcio=={_floor('grpcio')}"]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "libcontainerd"
    venv = cache / ("oldest-runtime-" + "_".join(p.replace("==", "-") for p in pins))
    python = venv / "bin" / "python"
    if not (venv / ".ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *pins],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            if os.environ.get("CI"):
                raise AssertionError(f"could not install {pins}: {done.stderr}")
            pytest.skip(f"could not install {pins} here: {done.stderr.strip()[-300:]}")
        (venv / ".ready").touch()
    return python


CHECK = textwrap.dedent(
    """
    import importlib, pathlib, sys
    import google.protobuf, grpc
    from google.protobuf import any_pb2
    root = pathlib.Path(sys.argv[1])
    pb = root / "libcontainerd" / "remote" / "_pb"
    count = 0
    for path in sorted(pb.rglob("*_pb2*.py")):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        module = importlib.import_module(name)
        count += 1
        for attr in dir(module):
            if attr.endswith("Stub"):
                getattr(module, attr)(grpc.insecure_channel("unix:/nonexistent"))
    tasks = importlib.import_module(
        "libcontainerd.remote._pb.containerd.services.tasks.v1.tasks_pb2"
    )
    request = tasks.StartRequest(container_id="c", exec_id="e")
    packed = any_pb2.Any()
    packed.Pack(request)
    again = tasks.StartRequest()
    assert packed.Unpack(again) and again == request
    print(google.protobuf.__version__, grpc.__version__, count)
    """
)


def test_generated_code_runs_under_the_oldest_allowed_runtime(tmp_path: Path) -> None:
    python = _oldest_venv()
    # Import the generated package without running libcontainerd/__init__ (whose other
    # dependencies are not under test here): stub parents whose __path__ leads on.
    stub = tmp_path / "stub"
    (stub / "libcontainerd" / "remote").mkdir(parents=True)
    (stub / "libcontainerd" / "__init__.py").write_text(
        f"__path__ = [{str(stub / 'libcontainerd')!r}, {str(ROOT / 'libcontainerd')!r}]\n"
    )
    (stub / "libcontainerd" / "remote" / "__init__.py").write_text(
        f"__path__ = [{str(ROOT / 'libcontainerd' / 'remote')!r}]\n"
    )
    done = subprocess.run(
        [str(python), "-c", CHECK, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(stub)},
        cwd=stub,
    )
    assert done.returncode == 0, done.stderr
    version, grpc_version, count = done.stdout.split()
    assert _same_release(version, _floor("protobuf"))
    assert _same_release(grpc_version, _floor("grpcio"))
    assert int(count) > 30
