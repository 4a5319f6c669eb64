"""Quickstart: ask libcontainerd which backend it would use here, and for which platform.

Run it with ``make demo``. Once a backend is available this script creates a
container from the project's busybox test image and runs a command in it; until
then it shows the runtime decision and this host's OCI platform.
"""

from __future__ import annotations

import libcontainerd
from libcontainerd import system
from libcontainerd.types import platform, requested_platform


def main() -> None:
    """Print the backend decision and the host platform in both wire forms."""
    decision = system.decide_backend()
    host = platform.default()
    print(f"libcontainerd {libcontainerd.__version__}")
    print(f"backend decision: {decision.reason}")
    print(f"host platform:    {host.format()}")
    print(f"X-Requested-Platform: {requested_platform.encode_requested_platform_header(host)}")
    try:
        client = libcontainerd.new_client()
    except libcontainerd.errors.Unimplemented as error:
        print(f"new_client(): {error}")
        return
    with client:
        print(f"connected: {client.backend} {client.version()}")


if __name__ == "__main__":
    main()
