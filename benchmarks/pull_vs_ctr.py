"""Benchmark: pull a 256 MiB, 8-layer image from a loopback registry, SDK against ``ctr``.

Each measurement starts a fresh private containerd (so the content store and the
snapshots are empty) and pulls the same image from a private docker-registry on
127.0.0.1 over plain HTTP, once through ``client.images.pull`` and once through
``ctr images pull --plain-http``; runs alternate so that both see the same
machine state. Both unpack into the overlayfs snapshotter.

Run as root: ``.venv/bin/python benchmarks/pull_vs_ctr.py [--runs 3] [--total-mib 256]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import libcontainerd
from libcontainerd.testing import build_image, start_containerd, start_registry

NAMESPACE = "bench"


def build_and_push(work: Path, registry_host: str, layers: int, layer_mib: int) -> str:
    """Build the image (incompressible data, so gzip does not shrink it) and push it."""
    extra = [{f"data/layer{i}.bin": os.urandom(layer_mib << 20)} for i in range(layers - 1)]
    build_image(work / "layout", extra_layers=extra)
    ref = f"{registry_host}/bench/big:latest"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--insecure-policy",
            "--dest-tls-verify=false",
            f"oci:{work / 'layout'}:latest",
            f"docker://{ref}",
        ],
        check=True,
    )
    return ref


def time_sdk_pull(work: Path, ref: str) -> tuple[float, float]:
    with start_containerd(Path(tempfile.mkdtemp(dir=work))) as daemon:
        client = libcontainerd.new_client("remote", address=daemon.address, namespace=NAMESPACE)
        with client:
            cpu = time.process_time()
            started = time.perf_counter()
            client.images.pull(ref)
            return time.perf_counter() - started, time.process_time() - cpu


def time_ctr_pull(work: Path, ref: str) -> tuple[float, float]:
    with start_containerd(Path(tempfile.mkdtemp(dir=work))) as daemon:
        command = [
            "ctr",
            "--address",
            str(daemon.socket_path),
            "-n",
            NAMESPACE,
            "images",
            "pull",
            "--plain-http",
            ref,
        ]
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
        return wall, cpu


def main() -> None:
    """Build, push, then time alternating pulls and print the medians and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--total-mib", type=int, default=256)
    args = parser.parse_args()
    args.layer_mib = args.total_mib // (args.layers - 1)  # the busybox layer is the eighth
    with tempfile.TemporaryDirectory(prefix="lcd-bench-") as tmp:
        work = Path(tmp)
        with start_registry(work / "registry") as registry:
            ref = build_and_push(work, registry.host, args.layers, args.layer_mib)
            sdk: list[float] = []
            ctr: list[float] = []
            for _ in range(args.runs):
                sdk.append(time_sdk_pull(work, ref)[0])
                ctr.append(time_ctr_pull(work, ref)[0])
    total = (args.layers - 1) * args.layer_mib
    print(f"image: {args.layers} layers, ~{total} MiB of data; runs: {args.runs}")
    print(
        f"sdk  pull: median {statistics.median(sdk):.2f} s  ({', '.join(f'{t:.2f}' for t in sdk)})"
    )
    print(
        f"ctr  pull: median {statistics.median(ctr):.2f} s  ({', '.join(f'{t:.2f}' for t in ctr)})"
    )
    print(f"ratio sdk/ctr: {statistics.median(sdk) / statistics.median(ctr):.2f}")


if __name__ == "__main__":
    main()
