"""Benchmark: sequential create / start / wait / delete of ``/bin/true``, local backend vs CLIs.

The same busybox bundle runs through ``libcontainerd`` (local backend, runc and
crun), through ``runc run`` / ``crun run`` directly, and through ``podman run
--rootfs`` where podman works. Reports the median per cycle and the ratio of the
SDK to the bare runtime in the same run. Run as root:
``.venv/bin/python benchmarks/local_lifecycle.py [--cycles 30]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import libcontainerd
from libcontainerd import oci
from libcontainerd.testing import busybox_rootfs
from libcontainerd.testing.host import ensure_crun_cgroup_layout
from libcontainerd.types import NullIO


def _measure(cycles: int, one: Callable[[int], None]) -> list[float]:
    one(-1)  # warm caches and lazily started helpers
    timings = []
    for i in range(cycles):
        started = time.perf_counter()
        one(i)
        timings.append(time.perf_counter() - started)
    return timings


def _sdk(work: Path, runtime: str, rootfs: Path) -> Callable[[int], None]:
    client = libcontainerd.new_client(
        "local", root=work / f"root-{runtime}", state=work / f"state-{runtime}", runtime=runtime
    )
    spec = oci.generate_spec(oci.with_process_args("/bin/true"), oci.with_rootfs(str(rootfs)))

    def one(i: int) -> None:
        container = client.new_container(f"bench-{runtime}-{i + 1}", spec)
        task = container.new_task(stdio=NullIO())
        task.start()
        task.wait(timeout=30)
        task.delete()
        container.delete()

    return one


def _cli(work: Path, runtime: str, bundle: Path) -> Callable[[int], None]:
    state = work / f"cli-state-{runtime}"

    def one(i: int) -> None:
        subprocess.run(
            [runtime, "--root", str(state), "run", "--bundle", str(bundle), f"cli-{i + 1}"],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )

    return one


def podman_command(rootfs: Path) -> list[str]:
    """``podman run`` of ``/bin/true`` on ``rootfs`` (the ulimits podman needs here)."""
    return [
        "podman",
        "run",
        "--rm",
        "--network=none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--rootfs",
        str(rootfs),
        "/bin/true",
    ]


def _podman(rootfs: Path) -> Callable[[int], None]:
    command = podman_command(rootfs)

    def one(_: int) -> None:
        subprocess.run(command, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    return one


def main() -> None:
    """Time every variant and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=30)
    args = parser.parse_args()
    ensure_crun_cgroup_layout()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="lcd-bench-") as tmp:
        work = Path(tmp)
        bundle = work / "bundle"
        rootfs = busybox_rootfs(bundle / "rootfs")
        spec = oci.generate_spec(oci.with_process_args("/bin/true"))
        (bundle / "config.json").write_text(json.dumps(spec))
        for runtime in ("runc", "crun"):
            if shutil.which(runtime) is None:
                continue
            results[f"sdk local/{runtime}"] = _measure(args.cycles, _sdk(work, runtime, rootfs))
            results[f"{runtime} run"] = _measure(args.cycles, _cli(work, runtime, bundle))
        if shutil.which("podman"):
            try:
                results["podman run"] = _measure(args.cycles, _podman(rootfs))
            except subprocess.CalledProcessError as error:
                print(f"podman run failed here, left out: {error}")
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name, value in medians.items():
        print(f"{name:18s} median {value * 1000:7.1f} ms per cycle ({args.cycles} cycles)")
    for runtime in ("runc", "crun"):
        if f"sdk local/{runtime}" in medians:
            ratio = medians[f"sdk local/{runtime}"] / medians[f"{runtime} run"]
            print(f"ratio sdk local/{runtime} : {runtime} run = {ratio:.2f}")
    if "podman run" in medians and "sdk local/runc" in medians:
        print(
            f"ratio sdk local/runc : podman run = "
            f"{medians['sdk local/runc'] / medians['podman run']:.2f}"
        )


if __name__ == "__main__":
    main()
