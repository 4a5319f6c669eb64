"""Async concurrency: 20 containers at once with ``new_async_client`` and ``asyncio.gather``."""

from __future__ import annotations

import asyncio
import sys
import time

from _image import import_busybox

import libcontainerd

COUNT = 20


async def main() -> int:
    """Run ``echo $N`` in 20 containers concurrently; check every output."""
    async with libcontainerd.new_async_client(namespace="examples-async") as client:
        # The image import is a blocking helper; the async client has the same operations.
        image = await asyncio.to_thread(lambda: import_busybox(client.sync))  # type: ignore[attr-defined]
        began = time.monotonic()
        results = await asyncio.gather(
            *(client.run(image, ["sh", "-c", f"echo {n}"], name=f"async-{n}") for n in range(COUNT))
        )
        took = time.monotonic() - began
        outputs = sorted(int(result.stdout) for result in results)
        assert outputs == list(range(COUNT)), outputs
        assert all(result.exit_code == 0 for result in results)
        print(f"{COUNT} containers ran concurrently in {took:.1f} s")
        print(f"left behind: {len(await client.containers())}")
        await client.images.remove(image)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
