"""Helpers for the local backend's integration tests (imported by ``test_local_*.py``)."""

from __future__ import annotations

import contextlib
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from libcontainerd.config import ClientConfig
from libcontainerd.errors import Error
from libcontainerd.local import LocalClient, LocalContainer, create_client
from libcontainerd.oci import SpecOpt, generate_spec, with_process_args, with_rootfs, with_tty

#: Also the cgroup parent, which the shared conftest removes after the session.
NAMESPACE = "libcontainerd-it"


class LocalEnv:
    """A private root/state pair for one runtime, with cleanup of every container."""

    def __init__(self, runtime: str, tmp_path: Path, rootfs: Path) -> None:
        self.runtime = runtime
        self.root = tmp_path / "root"
        self.state = tmp_path / "state"
        self.rootfs = rootfs
        self.clients: list[LocalClient] = []

    def client(self, **kwargs: Any) -> LocalClient:
        """A new client on this env's root and state."""
        config = ClientConfig(
            root=self.root,
            state=self.state,
            runtime=self.runtime,
            namespace=NAMESPACE,
            timeout=30.0,
            **kwargs,
        )
        client = create_client(config)
        self.clients.append(client)
        return client

    def new_id(self) -> str:
        """A fresh container id."""
        return f"lcd-{self.runtime}-{uuid.uuid4().hex[:10]}"

    def spec(self, *args: str, container_id: str, tty: bool = False, opts: Any = ()) -> Any:
        """A spec running ``args`` on the shared busybox rootfs."""
        extra: list[SpecOpt] = [with_process_args(*args), with_rootfs(self.rootfs), *opts]
        if tty:
            extra.append(with_tty())
        return generate_spec(*extra, container_id=container_id, namespace=NAMESPACE)

    def container(
        self, client: LocalClient, *args: str, tty: bool = False, **kwargs: Any
    ) -> LocalContainer:
        """Create a container running ``args``."""
        container_id = self.new_id()
        spec = self.spec(*args, container_id=container_id, tty=tty)
        return client.new_container(container_id, spec, **kwargs)

    def cleanup(self) -> None:
        """Force-delete every task and container left in the namespace."""
        if not self.root.exists():
            return
        client = self.client()
        for container in client.containers():
            with contextlib.suppress(Error):
                container.task().force_delete()
            with contextlib.suppress(Error):
                container.delete()
        for c in self.clients:
            c.close()


@contextlib.contextmanager
def local_env(runtime: str, tmp_path: Path, rootfs: Path) -> Iterator[LocalEnv]:
    """A :class:`LocalEnv` cleaned up on exit."""
    env = LocalEnv(runtime, tmp_path, rootfs)
    try:
        yield env
    finally:
        env.cleanup()


SIGKILL_CODE = 128 + int(signal.SIGKILL)
SIGTERM_CODE = 128 + int(signal.SIGTERM)
