#!/usr/bin/env python3
"""Regenerate ``libcontainerd/remote/_pb`` from the ``.proto`` files under ``protos/``.

Usage::

    python scripts/generate_protos.py           # rewrite libcontainerd/remote/_pb
    python scripts/generate_protos.py --check   # exit 1, naming files, if _pb is stale

Why a pinned generator: the committed modules must import under every protobuf and grpcio
release the package allows. Code from protoc 26 and later (grpcio-tools 1.63+) calls
``google.protobuf.runtime_version`` and refuses runtimes older than itself, and
``_pb2_grpc.py`` from grpcio-tools 1.63+ refuses older grpcio; grpcio-tools 1.62.3 bundles
protoc 25.1, whose output has neither check and loads under protobuf 4.25 up to the newest.
mypy-protobuf is pinned too so the ``.pyi`` stubs are byte-for-byte reproducible.

Where the generator runs: if the interpreter running this script already has exactly the
pinned grpcio-tools and mypy-protobuf, it is used. Otherwise a private virtualenv is created
(once) under ``$LIBCONTAINERD_PROTOGEN_VENV`` or ``~/.cache/libcontainerd/protogen-<pins>``
and the pins are installed into it with pip. ``--check`` works the same way from any test
environment. Exit codes: 0 fresh/written, 1 stale (``--check``), 2 protoc or usage failure,
3 the pinned generator could not be installed (callers may skip on 3).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

GRPCIO_TOOLS_VERSION = "1.62.3"
MYPY_PROTOBUF_VERSION = "3.6.0"
# grpcio-tools 1.62.x requires protobuf < 5; pinning it keeps the generator venv reproducible.
GENERATOR_PROTOBUF_VERSION = "4.25.9"
PINS = (
    f"grpcio-tools=={GRPCIO_TOOLS_VERSION}",
    f"mypy-protobuf=={MYPY_PROTOBUF_VERSION}",
    f"protobuf=={GENERATOR_PROTOBUF_VERSION}",
)

EXIT_STALE = 1
EXIT_FAILED = 2
EXIT_NO_GENERATOR = 3

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
OUT_DIR = ROOT / "libcontainerd" / "remote" / "_pb"
PACKAGE = "libcontainerd.remote._pb"

_PROBE = (
    "import importlib.metadata as m, sys\n"
    "try:\n"
    "    v = (m.version('grpcio-tools'), m.version('mypy-protobuf'))\n"
    "except m.PackageNotFoundError:\n"
    "    sys.exit(1)\n"
    f"sys.exit(0 if v == ({GRPCIO_TOOLS_VERSION!r}, {MYPY_PROTOBUF_VERSION!r}) else 1)\n"
)


class GeneratorUnavailable(Exception):
    """The pinned grpcio-tools / mypy-protobuf could not be found or installed."""


class GenerationFailed(Exception):
    """protoc rejected the input or a plugin failed."""


def _has_pins(python: Path) -> bool:
    probe = subprocess.run([str(python), "-c", _PROBE], capture_output=True, check=False)
    return probe.returncode == 0


def _default_venv() -> Path:
    override = os.environ.get("LIBCONTAINERD_PROTOGEN_VENV")
    if override:
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    tag = f"grpcio-tools-{GRPCIO_TOOLS_VERSION}_mypy-protobuf-{MYPY_PROTOBUF_VERSION}"
    return cache / "libcontainerd" / f"protogen-{tag}"


def find_generator_python(base_python: Path, venv: Path, *, verbose: bool) -> Path:
    """Return an interpreter that has the pinned generator, creating a venv if needed."""
    if _has_pins(Path(sys.executable)):
        return Path(sys.executable)
    python = venv / "bin" / "python"
    if python.exists() and _has_pins(python):
        return python
    if verbose:
        print(f"installing {' '.join(PINS)} into {venv}", file=sys.stderr)
    steps = [
        [str(base_python), "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", *PINS],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise GeneratorUnavailable(
                f"{' '.join(step)} failed with exit code {done.returncode}:\n"
                f"{done.stderr.strip()[-2000:]}\n"
                "Install the pins into the current environment instead, or point "
                "LIBCONTAINERD_PROTOGEN_VENV at a virtualenv that has them."
            )
    if not _has_pins(python):
        raise GeneratorUnavailable(f"{venv} was set up but does not report {' '.join(PINS)}")
    return python


def proto_files() -> list[str]:
    """All ``.proto`` files under ``protos/``, relative to it, sorted."""
    return sorted(p.relative_to(PROTO_DIR).as_posix() for p in PROTO_DIR.rglob("*.proto"))


def _top_level_packages() -> list[str]:
    return sorted(p.name for p in PROTO_DIR.iterdir() if p.is_dir())


def _fix_imports(path: Path, tops: list[str]) -> None:
    # protoc writes imports relative to the -I root ("from containerd.types import ...");
    # the modules live inside this package, so every such module path gets the package prefix.
    alternatives = "|".join(re.escape(t) for t in tops)
    text = path.read_text()
    if path.suffix == ".py":
        pattern = re.compile(rf"^(from\s+)((?:{alternatives})(?:\.\w+)*)(\s+import\s)", re.M)
        text = pattern.sub(lambda m: f"{m[1]}{PACKAGE}.{m[2]}{m[3]}", text)
    else:
        pattern = re.compile(rf"(?<![\w.])((?:{alternatives})(?:\.\w+)*\.\w+_pb2(?:_grpc)?)\b")
        text = pattern.sub(lambda m: f"{PACKAGE}.{m[1]}", text)
    path.write_text(text)


def _has_service(proto: Path) -> bool:
    return re.search(r"^\s*service\s+\w+", proto.read_text(), re.M) is not None


def generate(python: Path, out: Path) -> None:
    """Run protoc and post-process its output into ``out`` (which must be empty)."""
    files = proto_files()
    wkt = subprocess.run(
        [
            str(python),
            "-c",
            "import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "
            "'_proto'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    bindir = python.parent
    cmd = [
        str(python),
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{wkt}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *files,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=PROTO_DIR)
    if done.returncode != 0:
        raise GenerationFailed(f"protoc failed ({done.returncode}):\n{done.stderr}")
    for rel in files:
        if not _has_service(PROTO_DIR / rel):
            # The grpc plugins emit an import-only module even without services; drop it.
            stem = out / rel[: -len(".proto")]
            for suffix in ("_pb2_grpc.py", "_pb2_grpc.pyi"):
                Path(f"{stem}{suffix}").unlink(missing_ok=True)
    tops = _top_level_packages()
    for path in sorted(out.rglob("*.py*")):
        if path.suffix in (".py", ".pyi"):
            _fix_imports(path, tops)
    (out / "__init__.py").write_text(
        '"""Generated protobuf and gRPC modules for containerd API v1.\n\n'
        "Do not edit: regenerate with scripts/generate_protos.py from protos/.\n"
        '"""\n'
    )
    for directory in sorted({p.parent for p in out.rglob("*_pb2.py")}):
        while directory != out:
            init = directory / "__init__.py"
            if not init.exists():
                init.write_text('"""Generated package; see scripts/generate_protos.py."""\n')
            directory = directory.parent


def _listing(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def compare(fresh: Path, committed: Path) -> list[str]:
    """Describe every difference between freshly generated and committed trees."""
    new, old = _listing(fresh), _listing(committed) if committed.exists() else set()
    problems = [f"missing: {name}" for name in sorted(new - old)]
    problems += [f"not generated (stray): {name}" for name in sorted(old - new)]
    problems += [
        f"stale: {name}"
        for name in sorted(new & old)
        if not filecmp.cmp(fresh / name, committed / name, shallow=False)
    ]
    return problems


def install(fresh: Path, target: Path) -> None:
    """Replace ``target`` with ``fresh`` so a failed run never leaves a half-written tree."""
    staging = target.with_name(target.name + ".new")
    retired = target.with_name(target.name + ".old")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(retired, ignore_errors=True)
    shutil.copytree(fresh, staging)
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        description="Regenerate libcontainerd/remote/_pb from protos/."
    )
    parser.add_argument("--check", action="store_true", help="only report stale output")
    parser.add_argument(
        "--generator-python",
        type=Path,
        default=Path(sys.executable),
        help="interpreter used to create the generator venv (default: this one)",
    )
    parser.add_argument("--venv", type=Path, default=None, help="generator venv location")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        python = find_generator_python(
            args.generator_python, args.venv or _default_venv(), verbose=not args.quiet
        )
        with tempfile.TemporaryDirectory(prefix="libcontainerd-protogen-") as tmp:
            fresh = Path(tmp) / "_pb"
            fresh.mkdir()
            generate(python, fresh)
            problems = compare(fresh, OUT_DIR)
            if args.check:
                if problems:
                    print(
                        f"{OUT_DIR.relative_to(ROOT)} is out of date with protos/; run "
                        "python scripts/generate_protos.py and commit the result:",
                        file=sys.stderr,
                    )
                    for line in problems:
                        print(f"  {line}", file=sys.stderr)
                    return EXIT_STALE
                if not args.quiet:
                    print(f"{OUT_DIR.relative_to(ROOT)} is up to date")
                return 0
            if problems:
                install(fresh, OUT_DIR)
            if not args.quiet:
                print(f"{len(problems)} file(s) changed in {OUT_DIR.relative_to(ROOT)}")
            return 0
    except GeneratorUnavailable as exc:
        print(f"generator unavailable: {exc}", file=sys.stderr)
        return EXIT_NO_GENERATOR
    except (GenerationFailed, subprocess.CalledProcessError) as exc:
        print(f"generation failed: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
