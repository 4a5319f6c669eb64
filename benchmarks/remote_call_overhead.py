"""Per-call cost of a Version RPC for the two ways to serve sync + async from one core.

(a) sync core (grpc) + async facade on a thread pool  -- what libcontainerd.remote does;
(b) async core (grpc.aio) + sync facade on a private event-loop thread.
Run as root: ``.venv/bin/python benchmarks/remote_call_overhead.py [N]``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from google.protobuf import empty_pb2

from libcontainerd.config import ClientConfig
from libcontainerd.remote import AsyncRemoteClient, RemoteClient
from libcontainerd.remote._pb.containerd.services.version.v1 import version_pb2_grpc
from libcontainerd.testing.containerd_daemon import start_containerd

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
META = (("containerd-namespace", "bench"),)


def report(name: str, seconds: float) -> None:
    print(f"{name:<42} {seconds / N * 1e6:8.1f} us/call")


def main() -> None:
    with tempfile.TemporaryDirectory() as base:
        daemon = start_containerd(Path(base))
        try:
            config = ClientConfig(namespace="bench", address=daemon.address)
            client = RemoteClient(config)
            client.version()
            start = time.perf_counter()
            for _ in range(N):
                client.version()
            report("(a) sync core, sync call", time.perf_counter() - start)
            client.close()

            async def run_async_facade() -> float:
                aclient = AsyncRemoteClient(config)
                await aclient.version()
                begin = time.perf_counter()
                for _ in range(N):
                    await aclient.version()
                elapsed = time.perf_counter() - begin
                await aclient.close()
                return elapsed

            report("(a) sync core, async facade (thread pool)", asyncio.run(run_async_facade()))

            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, daemon=True)
            thread.start()

            async def make_stub() -> tuple[grpc.aio.Channel, version_pb2_grpc.VersionStub]:
                channel = grpc.aio.insecure_channel(f"unix:{daemon.socket_path}")
                return channel, version_pb2_grpc.VersionStub(channel)

            channel, stub = asyncio.run_coroutine_threadsafe(make_stub(), loop).result()

            async def one() -> object:
                return await stub.Version(empty_pb2.Empty(), metadata=META)

            asyncio.run_coroutine_threadsafe(one(), loop).result()

            async def many() -> float:
                begin = time.perf_counter()
                for _ in range(N):
                    await one()
                return time.perf_counter() - begin

            report(
                "(b) aio core, async call", asyncio.run_coroutine_threadsafe(many(), loop).result()
            )
            start = time.perf_counter()
            for _ in range(N):
                asyncio.run_coroutine_threadsafe(one(), loop).result()
            report("(b) aio core, sync facade (loop thread)", time.perf_counter() - start)
            asyncio.run_coroutine_threadsafe(channel.close(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
        finally:
            daemon.stop()


if __name__ == "__main__":
    main()
