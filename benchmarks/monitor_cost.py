"""Per-container monitor cost: this project's Python monitor against Debian's ``conmon``.

For each, ``--count`` containers running ``sleep`` are created on the same busybox
bundle with runc, and reported: the median time from asking for the container to
its being created (the monitor's share of the start-up path, runtime included), and
the monitor process's memory (PSS and RSS from ``/proc/<pid>/smaps_rollup``). For the
Python monitor, the zygote that forks them is reported too (its pages are shared by
copy-on-write, which is what PSS divides). Run as root:
``.venv/bin/python benchmarks/monitor_cost.py [--count 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import libcontainerd
from libcontainerd import oci
from libcontainerd.testing import busybox_rootfs
from libcontainerd.types.stdio import NullIO


def memory_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of ``pid`` in KiB."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("Pss", "Rss"):
                values[name] = int(rest.split()[0])
    return values["Pss"], values["Rss"]


def python_monitor(work: Path, rootfs: Path, count: int) -> dict[str, float]:
    """Start ``count`` sleeping containers with the local backend; measure its monitors."""
    client = libcontainerd.new_client(
        "local", root=work / "root", state=work / "state", runtime="runc"
    )
    spec = oci.generate_spec(oci.with_process_args("sleep", "300"), oci.with_rootfs(str(rootfs)))
    client.new_container("warm", spec).new_task(stdio=NullIO()).force_delete()
    tasks, startup = [], []
    for i in range(count):
        container = client.new_container(f"m{i}", spec)
        started = time.perf_counter()
        tasks.append(container.new_task(stdio=NullIO()))
        startup.append(time.perf_counter() - started)
    monitors = [
        int((work / "state" / "tasks" / "default" / f"m{i}" / "monitor.pid").read_text())
        for i in range(count)
    ]
    usage = [memory_kib(pid) for pid in monitors]
    zygote = client.zygote.pid
    zygote_usage = memory_kib(zygote) if zygote else (0, 0)
    for task in tasks:
        task.force_delete()
    for i in range(count):
        client.load_container(f"m{i}").delete()
    client.close()
    return {
        "create_ms": statistics.median(startup) * 1000,
        "pss_kib": statistics.median(u[0] for u in usage),
        "rss_kib": statistics.median(u[1] for u in usage),
        "zygote_pss_kib": zygote_usage[0],
        "zygote_rss_kib": zygote_usage[1],
    }


def conmon(work: Path, bundle: Path, count: int) -> dict[str, float]:
    """Start ``count`` sleeping containers under conmon (runc); measure the conmons."""
    state = work / "conmon-runc"
    spec = oci.generate_spec(oci.with_process_args("sleep", "300"))
    (bundle / "config.json").write_text(json.dumps(spec))
    startup, usage, ids = [], [], []
    (work / "sockets").mkdir()
    for i in range(count + 1):
        cid = f"conmon-{os.getpid()}-{i}"
        pidfile = work / f"{cid}.conmon.pid"
        command = [
            "conmon",
            "--cid",
            cid,
            "--cuuid",
            cid,
            "--name",
            cid,
            "--runtime",
            "/usr/bin/runc",
            "--runtime-arg",
            "--root",
            "--runtime-arg",
            str(state),
            "--bundle",
            str(bundle),
            "--exit-dir",
            str(work),
            "--log-path",
            str(work / f"{cid}.log"),
            "--container-pidfile",
            str(work / f"{cid}.pid"),
            "--conmon-pidfile",
            str(pidfile),
            "--socket-dir-path",
            str(work / "sockets"),
        ]
        # conmon reports the container's pid on its sync pipe once the runtime created it.
        read_fd, write_fd = os.pipe()
        started = time.perf_counter()
        subprocess.run(
            command,
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            pass_fds=(write_fd,),
            env={**os.environ, "_OCI_SYNCPIPE": str(write_fd)},
        )
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as sync:
            report = sync.readline()
        elapsed = time.perf_counter() - started
        reported = json.loads(report or b"{}")
        if int(reported.get("pid", reported.get("data", -1))) <= 0:
            raise RuntimeError(f"conmon could not create {cid}: {report!r}")
        ids.append(cid)
        if i == 0:
            continue  # warm-up
        startup.append(elapsed)
        usage.append(memory_kib(int(pidfile.read_text())))
    for cid in ids:
        subprocess.run(
            ["runc", "--root", str(state), "delete", "--force", cid],
            check=False,
            capture_output=True,
        )
    return {
        "create_ms": statistics.median(startup) * 1000,
        "pss_kib": statistics.median(u[0] for u in usage),
        "rss_kib": statistics.median(u[1] for u in usage),
    }


def main() -> None:
    """Measure both and print them side by side as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lcd-monitor-") as tmp:
        work = Path(tmp)
        bundle = work / "bundle"
        rootfs = busybox_rootfs(bundle / "rootfs")
        result = {
            "python monitor": python_monitor(work / "py", rootfs, args.count),
            "conmon": conmon(work, bundle, args.count),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
