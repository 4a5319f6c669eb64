"""Closing the stdin stream of piped stdio delivers EOF, on every backend (issue #8, point 1).

``ProcessIO.stdin.close()`` (``await io.close_stdin()`` on the async side, which the
async flavour's driver calls for ``stdin.close()``) must end a filter such as
``tr``; ``wait`` is bounded so a missing EOF fails the test instead of hanging it.
"""

from __future__ import annotations

from typing import Any

import pytest
from conformance_support import Env, unique_id

from libcontainerd.errors import DeadlineExceeded
from libcontainerd.oci import with_process_args
from libcontainerd.types.stdio import PipedIO

SLEEP = ("sleep", "300")


def test_closing_the_stdin_stream_ends_the_task(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("tr", "a-z", "A-Z"))
    task = container.new_task(stdio=PipedIO())
    task.start()
    task.io.stdin.write(b"shout this\n")
    task.io.stdin.close()
    assert task.wait(timeout=20).code == 0
    assert task.io.stdout.read() == b"SHOUT THIS\n"
    task.delete()


def test_stdin_closed_before_start_still_delivers_what_was_written(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("tr", "a-z", "A-Z"))
    task = container.new_task(stdio=PipedIO())
    task.io.stdin.write(b"early\n")
    task.io.stdin.close()
    task.start()
    assert task.wait(timeout=20).code == 0
    assert task.io.stdout.read() == b"EARLY\n"
    task.delete()


def test_closing_an_exec_stdin_stream_ends_the_process(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    process_spec = env.spec("x", with_process_args("tr", "a-z", "A-Z"))["process"]
    process = task.exec(unique_id("e"), process_spec, stdio=PipedIO())
    process.start()
    process.io.stdin.write(b"exec input\n")
    process.io.stdin.close()
    assert process.wait(timeout=20).code == 0
    assert process.io.stdout.read() == b"EXEC INPUT\n"
    process.delete()
    task.force_delete()


def test_closing_the_client_leaves_stdin_open_for_the_next_client(env: Env, client: Any) -> None:
    """Only an explicit close is EOF: ``client.close()`` leaves the process's stdin open,
    a new client attaches, writes more, and ``task.close_stdin()`` ends the input."""
    container = env.container(client, with_process_args("tr", "a-z", "A-Z"))
    task = container.new_task(stdio=PipedIO())
    task.start()
    task.io.stdin.write(b"one\n")
    task.io.stdin.flush()
    client.close()
    again = env.new_client().load_container(container.id).attach_task(stdio=PipedIO())
    with pytest.raises(DeadlineExceeded):
        again.wait(timeout=1)  # tr would have exited at once on EOF
    again.io.stdin.write(b"two\n")
    again.close_stdin()
    assert again.wait(timeout=20).code == 0
    assert again.io.stdout.read().endswith(b"TWO\n")
    again.delete()
