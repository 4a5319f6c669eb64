"""``make bench``: every case of issue #13 in one run, one table of medians and ratios.

One private registry and one private containerd serve every remote case (pulls get a
fresh containerd each, so they start from an empty store); the same busybox image and
bundle serve every lifecycle. Each case warms up, then alternates the SDK and its anchor
over a few rounds so both see the same machine state. Wall time is the median per
operation; CPU is the client's own user + sys time per operation (for tools run as a
subprocess, the child's rusage). Run as root:

    .venv/bin/python benchmarks/bench.py [--json bench.json] [--quick] [--only CASE ...]

``BENCH_QUICK=1`` (or ``--quick``) uses tiny counts and sizes: a smoke run of the
harness, not numbers to quote.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_cases import CASES, Context, Row

HERE = Path(__file__).resolve().parent


def _format_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms"


def _format_value(row: Row, which: str) -> str:
    value = row.subject_wall if which == "subject" else row.anchor_wall
    if row.unit == "ms":
        return _format_ms(value)
    return "-" if value is None else f"{value:,.1f} {row.unit}"


def print_table(rows: list[Row]) -> None:
    """The table: case, SDK, anchor, ratio (wall and CPU), target and whether it is met."""
    header = (
        f"{'case':<44} {'sdk':>11} {'sdk cpu':>10} {'anchor':<24} {'anchor v':>11} "
        f"{'anc cpu':>10} {'ratio':>6} {'cpu r':>6}  target"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        cpu_ratio = "-" if row.cpu_ratio is None else f"{row.cpu_ratio:.2f}"
        verdict = "" if row.met is None else (" ok" if row.met else " MISSED")
        print(
            f"{row.case:<44} {_format_value(row, 'subject'):>11} "
            f"{_format_ms(row.subject_cpu):>10} {row.anchor or '-':<24} "
            f"{_format_value(row, 'anchor'):>11} {_format_ms(row.anchor_cpu):>10} "
            f"{ratio:>6} {cpu_ratio:>6}  {row.target}{verdict}"
        )
        if row.note:
            print(f"{'':<4}{row.note}")


def _environment() -> dict[str, Any]:
    def version(*command: str) -> str:
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return "missing"
        return (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout else "missing"

    return {
        "python": sys.version.split()[0],
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "containerd": version("containerd", "--version"),
        "runc": version("runc", "--version"),
        "crun": version("crun", "--version"),
        "go": version("go", "version"),
    }


def main() -> None:
    """Run the chosen cases, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, default=Path("bench.json"))
    parser.add_argument("--quick", action="store_true", default=bool(os.environ.get("BENCH_QUICK")))
    parser.add_argument("--only", nargs="*", default=None, help="case ids to run (default: all)")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="NAME=N",
        help="override a count or size (rounds, lifecycles, parallel, pull_mib, ingest_mib, "
        "events, fresh, imports, new_clients, rss_lifecycles)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("make bench needs root (containerd, runc, crun)")
    started = time.time()
    environment = _environment()
    # An installed wheel has its bytecode compiled; an editable tree may not (or may be
    # run with PYTHONDONTWRITEBYTECODE): compile it so fresh processes load what users do.
    compileall.compile_dir(str(HERE.parent / "libcontainerd"), quiet=1)
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix="lcd-bench-") as tmp,
        Context(Path(tmp), quick=args.quick, here=HERE) as context,
    ):
        for override in args.set:
            name, _, value = override.partition("=")
            if not isinstance(getattr(context, name, None), int):
                sys.exit(f"--set {override}: {name} is not a count or size of the bench")
            setattr(context, name, int(value))
        for case_id, run in CASES:
            if args.only and case_id not in args.only:
                continue
            print(f"# {case_id} ...", file=sys.stderr, flush=True)
            try:
                rows.extend(run(context))
            except Exception as error:  # one broken case must not hide the others
                rows.append(Row.failed(case_id, error))
    environment["loadavg_at_end"] = os.getloadavg()
    environment["seconds"] = round(time.time() - started, 1)
    print()
    print_table(rows)
    args.json.write_text(
        json.dumps(
            {
                "quick": args.quick,
                "overrides": args.set,
                "environment": environment,
                "rows": [row.as_dict() for row in rows],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten: {args.json} ({environment['seconds']} s)")


if __name__ == "__main__":
    main()
