"""The cases of ``make bench`` (see ``bench.py``): each returns rows of the one table."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from local_lifecycle import podman_command
from pull_vs_ctr import build_and_push, time_ctr_pull, time_sdk_pull

import libcontainerd
from libcontainerd import oci
from libcontainerd.testing import build_image, busybox_rootfs, start_containerd, start_registry
from libcontainerd.testing.host import ensure_crun_cgroup_layout
from libcontainerd.types.stdio import NullIO

NAMESPACE = f"bench-{os.getpid()}"
GOPATH = "/usr/share/gocode"


# ----------------------------------------------------------------------- results


class Row:
    """One line of the table: the SDK's median against its anchor's, and the target."""

    def __init__(
        self,
        case: str,
        *,
        subject_wall: float | None,
        subject_cpu: float | None = None,
        anchor: str = "",
        anchor_wall: float | None = None,
        anchor_cpu: float | None = None,
        unit: str = "ms",
        target: str = "",
        limit: float | None = None,
        higher_is_better: bool = False,
        n: int = 0,
        note: str = "",
    ) -> None:
        self.case = case
        self.subject_wall = subject_wall
        self.subject_cpu = subject_cpu
        self.anchor = anchor
        self.anchor_wall = anchor_wall
        self.anchor_cpu = anchor_cpu
        self.unit = unit
        self.target = target
        self.n = n
        self.note = note
        self.ratio = _ratio(subject_wall, anchor_wall)
        self.cpu_ratio = _ratio(subject_cpu, anchor_cpu)
        compared = self.ratio if anchor else subject_wall
        if limit is None or compared is None:
            self.met: bool | None = None
        else:
            self.met = compared >= limit if higher_is_better else compared <= limit

    @classmethod
    def failed(cls, case: str, error: BaseException) -> Row:
        """A case that could not run, with the reason."""
        return cls(case, subject_wall=None, note=f"FAILED: {type(error).__name__}: {error}")

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return dict(vars(self))


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b in (None, 0) else a / b  # type: ignore[operator]


def _ms(values: list[float]) -> float | None:
    return statistics.median(values) * 1000 if values else None


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _quiet(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        command, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, **kwargs
    )


def _timed_child(command: list[str], **kwargs: Any) -> tuple[float, float]:
    """Wall and CPU (the child's user + sys) of one run of ``command``."""
    cpu = _children_cpu()
    started = time.perf_counter()
    _quiet(command, **kwargs)
    return time.perf_counter() - started, _children_cpu() - cpu


def _alternate(
    rounds: int, per_round: int, *runs: Callable[[], tuple[float, float]]
) -> list[tuple[list[float], list[float]]]:
    """Run each measurement ``per_round`` times, round after round, after one warm-up each."""
    results: list[tuple[list[float], list[float]]] = [([], []) for _ in runs]
    for run in runs:
        run()
    for _ in range(rounds):
        for run, (walls, cpus) in zip(runs, results, strict=True):
            for _ in range(per_round):
                wall, cpu = run()
                walls.append(wall)
                cpus.append(cpu)
    return results


# ----------------------------------------------------------------------- context


class Context:
    """What the cases share: sizes, the registry, the daemon, the image, the bundle."""

    def __init__(self, work: Path, *, quick: bool, here: Path) -> None:
        self.work = work
        self.quick = quick
        self.here = here
        self.rounds = 1 if quick else 3
        self.lifecycles = 2 if quick else 10  # per round
        self.parallel = 4 if quick else 32
        self.pull_mib = 16 if quick else 256
        self.ingest_mib = 32 if quick else 1024
        self.events = 300 if quick else 5000
        self.fresh = 2 if quick else 5  # per round
        self.imports = 3 if quick else 10  # per round
        self.new_clients = 5 if quick else 50
        self.rss_lifecycles = 30 if quick else 1000
        self._stack = contextlib.ExitStack()
        self._registry: Any = None
        self._daemon: Any = None
        self._ref = ""
        self._bundle: Path | None = None
        self._goclient: Path | None = None
        self._seq = 0

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def unique(self, prefix: str) -> str:
        """A fresh container id."""
        self._seq += 1
        return f"{prefix}-{os.getpid()}-{self._seq}"

    @property
    def registry(self) -> Any:
        """The private registry (plain HTTP on 127.0.0.1)."""
        if self._registry is None:
            self._registry = self._stack.enter_context(start_registry(self.work / "registry"))
        return self._registry

    @property
    def daemon(self) -> Any:
        """The private containerd every remote case uses."""
        if self._daemon is None:
            self._daemon = self._stack.enter_context(start_containerd(self.work / "containerd"))
        return self._daemon

    @property
    def ctr(self) -> list[str]:
        """``ctr`` aimed at the private daemon and the bench namespace."""
        return ["ctr", "--address", str(self.daemon.socket_path), "-n", NAMESPACE]

    def remote_client(self) -> Any:
        """A new remote client of the bench namespace."""
        return libcontainerd.new_client("remote", address=self.daemon.address, namespace=NAMESPACE)

    @property
    def image(self) -> str:
        """The busybox image, pushed to the registry and pulled into the daemon."""
        if not self._ref:
            self._ref = push_layout(self, self.work / "busybox", "bench/busybox")
            with self.remote_client() as client:
                client.images.pull(self._ref)
        return self._ref

    @property
    def bundle(self) -> Path:
        """A runtime bundle of busybox running ``/bin/true``."""
        if self._bundle is None:
            bundle = self.work / "bundle"
            busybox_rootfs(bundle / "rootfs")
            spec = oci.generate_spec(oci.with_process_args("/bin/true"))
            (bundle / "config.json").write_text(json.dumps(spec))
            self._bundle = bundle
        return self._bundle

    @property
    def goclient(self) -> Path:
        """The Go anchor, built offline from Debian's containerd sources (GOPATH mode)."""
        if self._goclient is None:
            binary = self.work / "goclient"
            env = {
                **os.environ,
                "GOPATH": GOPATH,
                "GO111MODULE": "off",
                "GOFLAGS": "",
                "GOCACHE": os.environ.get("GOCACHE", "/tmp/libcontainerd-bench-gocache"),
            }
            subprocess.run(
                ["go", "build", "-o", str(binary), "."],
                cwd=self.here / "goclient",
                env=env,
                check=True,
                timeout=1800,
            )
            self._goclient = binary
        return self._goclient

    def go(self, mode: str, count: int) -> dict[str, Any]:
        """Run the Go anchor; its JSON report."""
        out = subprocess.run(
            [
                str(self.goclient),
                "-address",
                str(self.daemon.socket_path),
                "-namespace",
                NAMESPACE,
                "-image",
                self.image,
                "-count",
                str(count),
                mode,
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        report: dict[str, Any] = json.loads(out.stdout)
        return report


def push_layout(context: Context, layout: Path, repo: str, **build: Any) -> str:
    """Build an image into ``layout`` and push it to the context's registry with skopeo."""
    build_image(layout, **build)
    ref = f"{context.registry.host}/{repo}:latest"
    _quiet(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--insecure-policy",
            "--dest-tls-verify=false",
            f"oci:{layout}:latest",
            f"docker://{ref}",
        ]
    )
    return ref


# ------------------------------------------------------------------- lifecycles


def _remote_once(context: Context, client: Any) -> None:
    cid = context.unique("py")
    spec = oci.generate_spec(
        oci.with_process_args("/bin/true"), container_id=cid, namespace=NAMESPACE
    )
    container = client.new_container(
        cid, spec, image=context.image, runtime_options={"root": str(context.daemon.runc_root)}
    )
    task = container.new_task(stdio=NullIO())
    task.start()
    task.wait(timeout=60)
    task.delete()
    container.delete()


async def _remote_once_async(context: Context, client: Any) -> None:
    cid = context.unique("pya")
    spec = oci.generate_spec(
        oci.with_process_args("/bin/true"), container_id=cid, namespace=NAMESPACE
    )
    container = await client.new_container(
        cid, spec, image=context.image, runtime_options={"root": str(context.daemon.runc_root)}
    )
    task = await container.new_task(stdio=NullIO())
    await task.start()
    await task.wait(timeout=60)
    await task.delete()
    await container.delete()


def _in_process(step: Callable[[], None]) -> Callable[[], tuple[float, float]]:
    def run() -> tuple[float, float]:
        cpu = time.process_time()
        started = time.perf_counter()
        step()
        return time.perf_counter() - started, time.process_time() - cpu

    return run


def case_remote_lifecycle(context: Context) -> list[Row]:
    """Remote lifecycle of /bin/true: SDK vs the Go client loop vs ``ctr run --rm``."""
    client = context.remote_client()
    ref = context.image
    ctr = [*context.ctr, "run", "--rm", "--null-io", ref]
    go_walls: list[float] = []
    go_cpus: list[float] = []

    def go_round() -> tuple[float, float]:
        report = context.go("lifecycle", context.lifecycles)
        go_walls.extend(report["walls"])
        go_cpus.extend(report["cpu_each"])
        return 0.0, 0.0

    sdk = _in_process(lambda: _remote_once(context, client))
    ctr_run = lambda: _timed_child([*ctr, context.unique("ctr"), "/bin/true"])  # noqa: E731
    (sdk_w, sdk_c), (ctr_w, ctr_c) = _alternate(context.rounds, context.lifecycles, sdk, ctr_run)
    for _ in range(context.rounds):
        go_round()
    client.close()
    n = context.rounds * context.lifecycles
    return [
        Row(
            "remote lifecycle, sequential",
            subject_wall=_ms(sdk_w),
            subject_cpu=_ms(sdk_c),
            anchor="Go client loop",
            anchor_wall=_ms(go_walls),
            anchor_cpu=_ms(go_cpus),
            target="wall <= 1.0x, cpu <= 1.0x",
            limit=1.0,
            n=n,
        ),
        Row(
            "remote lifecycle, sequential",
            subject_wall=_ms(sdk_w),
            subject_cpu=_ms(sdk_c),
            anchor="ctr run --rm",
            anchor_wall=_ms(ctr_w),
            anchor_cpu=_ms(ctr_c),
            n=n,
        ),
    ]


def case_remote_parallel(context: Context) -> list[Row]:
    """32 lifecycles at once: the async client and threads vs 32 goroutines."""
    count = context.parallel
    client = context.remote_client()

    def threads() -> tuple[float, float]:
        cpu = time.process_time()
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            for future in [pool.submit(_remote_once, context, client) for _ in range(count)]:
                future.result()
        return time.perf_counter() - started, time.process_time() - cpu

    def run_async() -> tuple[float, float]:
        async def batch() -> None:
            aclient = libcontainerd.new_async_client(
                "remote", address=context.daemon.address, namespace=NAMESPACE
            )
            try:
                await asyncio.gather(*(_remote_once_async(context, aclient) for _ in range(count)))
            finally:
                await aclient.close()

        cpu = time.process_time()
        started = time.perf_counter()
        asyncio.run(batch())
        return time.perf_counter() - started, time.process_time() - cpu

    def go() -> tuple[float, float]:
        report = context.go("parallel", count)
        return report["walls"][0], report["cpu_each"][0]

    (t_w, t_c), (a_w, a_c), (g_w, g_c) = _alternate(context.rounds, 1, threads, run_async, go)
    client.close()
    rows = []
    for name, walls, cpus in (("threads", t_w, t_c), ("async", a_w, a_c)):
        rows.append(
            Row(
                f"remote lifecycle, {count} at once ({name})",
                subject_wall=_ms(walls),
                subject_cpu=_ms(cpus),
                anchor=f"{count} goroutines",
                anchor_wall=_ms(g_w),
                anchor_cpu=_ms(g_c),
                target="wall <= 1.0x",
                limit=1.0,
                n=context.rounds,
            )
        )
    return rows


def _local_once(client: Any, rootfs: Path, cid: str) -> None:
    spec = oci.generate_spec(oci.with_process_args("/bin/true"), oci.with_rootfs(str(rootfs)))
    container = client.new_container(cid, spec)
    task = container.new_task(stdio=NullIO())
    task.start()
    task.wait(timeout=60)
    task.delete()
    container.delete()


def case_local_lifecycle(context: Context) -> list[Row]:
    """Local lifecycle: the SDK with runc and crun vs ``runc run``, ``crun run``, podman."""
    ensure_crun_cgroup_layout()
    bundle = context.bundle
    rootfs = bundle / "rootfs"
    rows: list[Row] = []
    podman = podman_command(rootfs)
    podman_w: list[float] = []
    for runtime, limit in (("runc", 1.25), ("crun", 1.5)):
        if shutil.which(runtime) is None:
            continue
        client = libcontainerd.new_client(
            "local",
            root=context.work / f"local-{runtime}",
            state=context.work / f"local-state-{runtime}",
            runtime=runtime,
        )
        state = context.work / f"cli-{runtime}"
        sdk = _in_process(lambda c=client: _local_once(c, rootfs, context.unique("l")))

        def cli(runtime: str = runtime, state: Path = state) -> tuple[float, float]:
            return _timed_child(
                [runtime, "--root", str(state), "run", "--bundle", str(bundle), context.unique("r")]
            )

        def steps(runtime: str = runtime, state: Path = state) -> tuple[float, float]:
            # The three commands a create/start/.../delete API needs at the least.
            cid = context.unique("s")
            base = [runtime, "--root", str(state)]
            cpu = _children_cpu()
            started = time.perf_counter()
            _quiet([*base, "create", "--bundle", str(bundle), cid])
            _quiet([*base, "start", cid])
            _quiet([*base, "delete", "--force", cid])
            return time.perf_counter() - started, _children_cpu() - cpu

        runs: list[Callable[[], tuple[float, float]]] = [sdk, cli, steps]
        if runtime == "runc" and shutil.which("podman"):
            runs.append(lambda: _timed_child(podman))
        results = _alternate(context.rounds, context.lifecycles, *runs)
        client.close()
        (sdk_w, sdk_c), (cli_w, cli_c), (steps_w, steps_c) = results[0], results[1], results[2]
        if len(results) > 3:
            podman_w = results[3][0]
        n = context.rounds * context.lifecycles
        rows.append(
            Row(
                f"local lifecycle ({runtime})",
                subject_wall=_ms(sdk_w),
                subject_cpu=_ms(sdk_c),
                anchor=f"{runtime} run",
                anchor_wall=_ms(cli_w),
                anchor_cpu=_ms(cli_c),
                target=f"<= {limit}x",
                limit=limit,
                n=n,
            )
        )
        rows.append(
            Row(
                f"local lifecycle ({runtime})",
                subject_wall=_ms(sdk_w),
                subject_cpu=_ms(sdk_c),
                anchor=f"{runtime} create+start+delete",
                anchor_wall=_ms(steps_w),
                anchor_cpu=_ms(steps_c),
                target="",
                n=n,
                note="the bare runtime commands of a step-by-step lifecycle, for scale",
            )
        )
        if podman_w:
            rows.append(
                Row(
                    f"local lifecycle ({runtime})",
                    subject_wall=_ms(sdk_w),
                    anchor="podman run --rootfs",
                    anchor_wall=_ms(podman_w),
                    target="< 1.0x",
                    limit=1.0,
                    n=n,
                )
            )
            podman_w = []
    return rows


# ------------------------------------------------------------------- images


def _big_image(context: Context) -> tuple[str, int]:
    """The pull image: busybox plus seven layers of random data, pushed once."""
    if not getattr(context, "_big", None):
        layers = 8
        layer_mib = max(context.pull_mib // (layers - 1), 1)
        big = context.work / "big"
        big.mkdir()
        ref = build_and_push(big, context.registry.host, layers, layer_mib)
        context._big = (ref, layer_mib * (layers - 1))  # type: ignore[attr-defined]
    result: tuple[str, int] = context._big  # type: ignore[attr-defined]
    return result


def case_pull(context: Context) -> list[Row]:
    """Pull 256 MiB in 8 layers into an empty containerd: SDK vs ``ctr images pull``."""
    ref, mib = _big_image(context)
    (s_w, s_c), (c_w, c_c) = _alternate(
        context.rounds,
        1,
        lambda: time_sdk_pull(context.work, ref),
        lambda: time_ctr_pull(context.work, ref),
    )
    return [
        Row(
            f"pull {mib} MiB / 8 layers, throughput",
            subject_wall=mib / statistics.median(s_w),
            subject_cpu=_ms(s_c),
            anchor="ctr images pull",
            anchor_wall=mib / statistics.median(c_w),
            anchor_cpu=_ms(c_c),
            unit="MiB/s",
            target=">= 1.2x",
            limit=1.2,
            higher_is_better=True,
            n=context.rounds,
            note=f"wall: sdk {statistics.median(s_w):.2f} s, ctr {statistics.median(c_w):.2f} s",
        )
    ]


def case_push(context: Context) -> list[Row]:
    """Push the pull image to an empty registry: SDK vs ``ctr images push``."""
    ref, mib = _big_image(context)
    with context.remote_client() as client:
        client.images.pull(ref)

    def sdk() -> tuple[float, float]:
        with start_registry(Path(tempfile.mkdtemp(dir=context.work))) as registry:
            target = f"{registry.host}/bench/pushed:sdk"
            with context.remote_client() as client:
                cpu = time.process_time()
                started = time.perf_counter()
                client.images.push(target, source=ref)
                return time.perf_counter() - started, time.process_time() - cpu

    def ctr() -> tuple[float, float]:
        with start_registry(Path(tempfile.mkdtemp(dir=context.work))) as registry:
            target = f"{registry.host}/bench/pushed:ctr"
            _quiet([*context.ctr, "images", "tag", "--force", ref, target])
            return _timed_child([*context.ctr, "images", "push", "--plain-http", target])

    (s_w, s_c), (c_w, c_c) = _alternate(context.rounds, 1, sdk, ctr)
    return [
        Row(
            f"push {mib} MiB / 8 layers, throughput",
            subject_wall=mib / statistics.median(s_w),
            subject_cpu=_ms(s_c),
            anchor="ctr images push",
            anchor_wall=mib / statistics.median(c_w),
            anchor_cpu=_ms(c_c),
            unit="MiB/s",
            higher_is_better=True,
            n=context.rounds,
        )
    ]


def case_content_ingest(context: Context) -> list[Row]:
    """A 1 GiB blob through the content service: SDK writer vs ``ctr content ingest``.

    Every run writes a blob the daemon has never seen (a fresh first MiB): containerd
    keeps a removed blob's data until its garbage collector runs, and a writer that
    finds the data skips sending it.
    """
    from libcontainerd.remote._content import RemoteContentStore
    from libcontainerd.types.descriptor import Descriptor

    size = context.ingest_mib << 20
    blob = context.work / "blob.bin"
    with blob.open("wb") as f:
        for _ in range(context.ingest_mib):
            f.write(os.urandom(1 << 20))
    client = context.remote_client()
    store = RemoteContentStore(client.transport)
    written: list[str] = []

    def fresh_blob() -> str:
        with blob.open("r+b") as f:
            f.write(os.urandom(1 << 20))
            f.seek(0)
            digest = hashlib.file_digest(f, "sha256")
        sha = f"sha256:{digest.hexdigest()}"
        written.append(sha)
        return sha

    def sdk() -> tuple[float, float]:
        sha = fresh_blob()
        descriptor = Descriptor(media_type="application/octet-stream", digest=sha, size=size)
        cpu = time.process_time()
        started = time.perf_counter()
        writer = store.writer(descriptor)
        with blob.open("rb") as f:
            while chunk := f.read(1 << 20):
                writer.write(chunk)
        writer.commit()
        return time.perf_counter() - started, time.process_time() - cpu

    def ctr() -> tuple[float, float]:
        sha = fresh_blob()
        with blob.open("rb") as f:
            command = [*context.ctr, "content", "ingest", "--expected-size", str(size)]
            cpu = _children_cpu()
            started = time.perf_counter()
            subprocess.run(
                [*command, "--expected-digest", sha, f"bench-{sha[7:19]}"],
                stdin=f,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            return time.perf_counter() - started, _children_cpu() - cpu

    (s_w, s_c), (c_w, c_c) = _alternate(context.rounds, 1, sdk, ctr)
    subprocess.run([*context.ctr, "content", "rm", *written], capture_output=True, check=False)
    client.close()
    blob.unlink()
    mib = context.ingest_mib
    return [
        Row(
            f"content write {mib} MiB, throughput",
            subject_wall=mib / statistics.median(s_w),
            subject_cpu=_ms(s_c),
            anchor="ctr content ingest",
            anchor_wall=mib / statistics.median(c_w),
            anchor_cpu=_ms(c_c),
            unit="MiB/s",
            target=">= 0.9x",
            limit=0.9,
            higher_is_better=True,
            n=context.rounds,
        )
    ]


# ------------------------------------------------------------------- events


def case_events(context: Context) -> list[Row]:
    """Events decoded per second: the SDK's stream and ``ctr events`` read the same burst."""
    from google.protobuf import any_pb2

    from libcontainerd.remote._pb.containerd.events import container_pb2
    from libcontainerd.remote._pb.containerd.services.events.v1 import events_pb2

    count = context.events
    client = context.remote_client()
    payload = any_pb2.Any(
        type_url="containerd.events.ContainerUpdate",
        value=container_pb2.ContainerUpdate(id="bench", image="x").SerializeToString(),
    )
    metadata = (("containerd-namespace", NAMESPACE),)
    rates: list[float] = []
    ctr_rates: list[float] = []
    for _ in range(context.rounds):
        stream = client.events(['topic=="/containers/update"'])
        ctr = subprocess.Popen(
            [*context.ctr, "events"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        time.sleep(0.5)  # both subscribed before the burst
        received: list[float] = []
        ctr_done: list[float] = []

        def consume(stream: Any = stream, received: list[float] = received) -> None:
            for _event in stream:
                received.append(time.perf_counter())
                if len(received) >= count:
                    return

        def consume_ctr(ctr: Any = ctr, done: list[float] = ctr_done) -> None:
            seen = 0
            for line in ctr.stdout:
                if b"/containers/update" in line:
                    seen += 1
                    if seen >= count:
                        done.append(time.perf_counter())
                        return

        readers = [threading.Thread(target=consume), threading.Thread(target=consume_ctr)]
        for reader in readers:
            reader.start()
        started = time.perf_counter()
        publish = client.transport.events.Publish
        futures = [
            publish.future(
                events_pb2.PublishRequest(topic="/containers/update", event=payload),
                metadata=metadata,
            )
            for _ in range(count)
        ]
        for future in futures:
            future.result()
        for reader in readers:
            reader.join(120)
        stream.close()
        ctr.kill()
        ctr.wait()
        if len(received) >= count:
            rates.append(count / (received[-1] - started))
        if ctr_done:
            ctr_rates.append(count / (ctr_done[0] - started))
    client.close()
    return [
        Row(
            f"events decoded ({count} published at once)",
            subject_wall=statistics.median(rates) if rates else None,
            anchor="ctr events",
            anchor_wall=statistics.median(ctr_rates) if ctr_rates else None,
            unit="ev/s",
            higher_is_better=True,
            n=context.rounds,
            note="rate = events / (last one decoded - burst start); bounded by containerd too",
        )
    ]


# ------------------------------------------------------------------- fresh processes

_FRESH_RUN = """
import sys
import libcontainerd
address, namespace, ref, root, cid = sys.argv[1:6]
with libcontainerd.new_client("remote", address=address, namespace=namespace) as client:
    result = client.run(ref, ["/bin/true"], name=cid, runtime_options={"root": root})
sys.exit(result.exit_code)
"""


def case_fresh_process(context: Context) -> list[Row]:
    """``client.run()`` of /bin/true from a fresh process (import, connect, run, exit) vs
    ``ctr run --rm``; the interpreter with the gRPC imports alone gives the floor."""
    ref = context.image
    root = str(context.daemon.runc_root)
    address = context.daemon.address

    def sdk() -> tuple[float, float]:
        cid = context.unique("fresh")
        return _timed_child([sys.executable, "-c", _FRESH_RUN, address, NAMESPACE, ref, root, cid])

    def ctr() -> tuple[float, float]:
        return _timed_child(
            [*context.ctr, "run", "--rm", "--null-io", ref, context.unique("fctr"), "/bin/true"]
        )

    def floor() -> tuple[float, float]:
        return _timed_child([sys.executable, "-c", "import grpc, google.protobuf, attrs"])

    (s_w, s_c), (c_w, c_c), (f_w, f_c) = _alternate(context.rounds, context.fresh, sdk, ctr, floor)
    return [
        Row(
            "fresh process: run /bin/true (remote)",
            subject_wall=_ms(s_w),
            subject_cpu=_ms(s_c),
            anchor="python: import grpc etc.",
            anchor_wall=_ms(f_w),
            anchor_cpu=_ms(f_c),
            target="",
            n=context.rounds * context.fresh,
            note="the interpreter and the gRPC, protobuf and attrs imports alone, for scale",
        ),
        Row(
            "fresh process: run /bin/true (remote)",
            subject_wall=_ms(s_w),
            subject_cpu=_ms(s_c),
            anchor="ctr run --rm (fresh)",
            anchor_wall=_ms(c_w),
            anchor_cpu=_ms(c_c),
            target="<= 1.0x",
            limit=1.0,
            n=context.rounds * context.fresh,
            note="client.run() collects stdout and stderr; ctr runs with --null-io",
        ),
    ]


_IMPORT = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"


def _import_time(modules: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT.format(modules)], capture_output=True, check=True
    )
    return float(out.stdout)


def case_import(context: Context) -> list[Row]:
    """Cold ``import libcontainerd`` (and with the blocking remote client loaded) in a new
    process."""
    runs = [
        lambda: (_import_time("libcontainerd"), 0.0),
        lambda: (_import_time("libcontainerd.remote._client"), 0.0),
        lambda: (_import_time("grpc, google.protobuf, httpx, attrs"), 0.0),
    ]
    (lib, _), (remote, _), (deps, _) = _alternate(context.rounds, context.imports, *runs)
    n = context.rounds * context.imports
    return [
        Row(
            "import libcontainerd (cold)",
            subject_wall=_ms(lib),
            target="<= 50 ms",
            limit=50.0,
            n=n,
        ),
        Row(
            "import the remote client (cold)",
            subject_wall=_ms(remote),
            anchor="import grpc, protobuf, httpx, attrs",
            anchor_wall=_ms(deps),
            n=n,
        ),
    ]


def case_new_client(context: Context) -> list[Row]:
    """``new_client()`` + ``close()`` in a warm process, both backends."""
    rows = []
    makers: list[tuple[str, Callable[[], Any]]] = [
        ("remote", context.remote_client),
        (
            "local",
            lambda: libcontainerd.new_client(
                "local", root=context.work / "nc-root", state=context.work / "nc-state"
            ),
        ),
    ]
    for name, make in makers:
        make().close()
        walls = []
        for _ in range(context.new_clients):
            started = time.perf_counter()
            make().close()
            walls.append(time.perf_counter() - started)
        rows.append(Row(f"new_client() + close ({name})", subject_wall=_ms(walls), n=len(walls)))
    return rows


_RSS_PROBE = """
import json, os, sys
import libcontainerd
from libcontainerd import oci
from libcontainerd.types.stdio import NullIO
backend, count, address, namespace, ref, root, work, rootfs = sys.argv[1:9]

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)

if backend == "remote":
    client = libcontainerd.new_client("remote", address=address, namespace=namespace)
else:
    client = libcontainerd.new_client("local", root=work + "/root", state=work + "/state")
def once(i):
    cid = f"rss-{os.getpid()}-{i}"
    if backend == "remote":
        spec = oci.generate_spec(oci.with_process_args("/bin/true"), container_id=cid,
                                 namespace=namespace)
        container = client.new_container(cid, spec, image=ref, runtime_options={"root": root})
    else:
        spec = oci.generate_spec(oci.with_process_args("/bin/true"), oci.with_rootfs(rootfs))
        container = client.new_container(cid, spec)
    task = container.new_task(stdio=NullIO())
    task.start()
    task.wait(timeout=60)
    task.delete()
    container.delete()
for i in range(20):
    once(i)
before = rss_mib()
for i in range(20, 20 + int(count)):
    once(i)
print(json.dumps({"before": before, "after": rss_mib()}))
client.close()
"""


def case_rss(context: Context) -> list[Row]:
    """Resident memory growth of one client over many lifecycles, in a fresh process."""
    rows = []
    for name in ("remote", "local"):
        work = context.work / f"rss-{name}"
        work.mkdir()
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                _RSS_PROBE,
                name,
                str(context.rss_lifecycles),
                context.daemon.address,
                NAMESPACE,
                context.image,
                str(context.daemon.runc_root),
                str(work),
                str(context.bundle / "rootfs"),
            ],
            check=True,
            capture_output=True,
            timeout=3600,
        )
        rss = json.loads(out.stdout)
        rows.append(
            Row(
                f"RSS growth over {context.rss_lifecycles} lifecycles ({name})",
                subject_wall=rss["after"] - rss["before"],
                unit="MiB",
                target="<= 5 MiB",
                limit=5.0,
                n=context.rss_lifecycles,
                note=f"fresh process: RSS {rss['before']:.1f} -> {rss['after']:.1f} MiB "
                "(after 20 warm-up lifecycles)",
            )
        )
    return rows


CASES: list[tuple[str, Callable[[Context], list[Row]]]] = [
    ("import", case_import),
    ("new-client", case_new_client),
    ("local-lifecycle", case_local_lifecycle),
    ("remote-lifecycle", case_remote_lifecycle),
    ("remote-parallel", case_remote_parallel),
    ("fresh-process", case_fresh_process),
    ("events", case_events),
    ("pull", case_pull),
    ("push", case_push),
    ("content-ingest", case_content_ingest),
    ("rss", case_rss),
]
