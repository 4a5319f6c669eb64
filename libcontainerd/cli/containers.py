"""``run``, ``ps``, ``exec``, ``logs``, ``stop``, ``kill``, ``pause``, ``resume`` and ``rm``."""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from libcontainerd.cli.output import make_client, print_json_lines, print_table
from libcontainerd.cli.run_extensions import RunRequest, run_extensions
from libcontainerd.cli.streams import attach, stdio_for
from libcontainerd.client import Client, Container
from libcontainerd.errors import Error, FailedPrecondition, InvalidArgument, NotFound
from libcontainerd.shortcuts import run_spec
from libcontainerd.types.stdio import LogIO

__all__ = ["parse_env_file", "parse_memory", "parse_mount", "parse_volume", "register"]

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_memory(text: str) -> int:
    """``64m`` -> bytes; units b, k, m, g, t (powers of 1024), case-insensitive."""
    match = re.fullmatch(r"\s*(\d+)\s*([bkmgt]?)b?\s*", text.lower())
    if match is None or int(match.group(1)) == 0:
        raise InvalidArgument(f"memory {text!r} is not a size such as 512m or 2g")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_mount(text: str) -> dict[str, Any]:
    """``type=bind,source=/a,target=/b,ro`` -> an OCI mount (type bind or tmpfs)."""
    fields: dict[str, str] = {}
    readonly = False
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip().lower()
        if key in ("ro", "readonly") and value in ("", "true", "1"):
            readonly = True
        elif key in ("src", "source"):
            fields["source"] = value
        elif key in ("dst", "destination", "target"):
            fields["destination"] = value
        elif key == "type":
            fields["type"] = value
        else:
            raise InvalidArgument(
                f"mount option {part!r} is not one of type, source, target, ro in {text!r}"
            )
    kind = fields.get("type", "bind")
    if "destination" not in fields or (kind == "bind" and "source" not in fields):
        raise InvalidArgument(f"mount {text!r} needs target= (and source= for a bind mount)")
    if kind == "bind":
        options = ["rbind", "ro" if readonly else "rw"]
        return {
            "type": "bind",
            "source": str(Path(fields["source"]).resolve()),
            "destination": fields["destination"],
            "options": options,
        }
    if kind == "tmpfs":
        return {
            "type": "tmpfs",
            "source": "tmpfs",
            "destination": fields["destination"],
            "options": ["nosuid", "nodev", "ro" if readonly else "rw"],
        }
    raise InvalidArgument(f"mount type {kind!r} is not bind or tmpfs")


def parse_volume(text: str) -> dict[str, Any]:
    """``/host:/container[:ro]`` -> a bind mount."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts[:2]) or parts[2:] not in ([], ["ro"], ["rw"]):
        raise InvalidArgument(f"volume {text!r} is not HOST:CONTAINER[:ro|rw]")
    suffix = ",ro" if parts[2:] == ["ro"] else ""
    return parse_mount(f"type=bind,source={parts[0]},target={parts[1]}{suffix}")


def parse_env_file(path: str) -> list[str]:
    """``KEY=value`` lines of ``path``; blank lines and ``#`` comments are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise InvalidArgument(f"cannot read env file {path}: {error.strerror}") from None
    entries = [line.strip() for line in lines]
    return [entry for entry in entries if entry and not entry.startswith("#")]


def _labels(items: Sequence[str] | None) -> dict[str, str]:
    labels = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"label {item!r} is not KEY=VALUE")
        labels[key] = value
    return labels


def _ensure_image(client: Client, ref: str, platform: str | None) -> str:
    try:
        return client.images.get(ref).name
    except NotFound:
        pass
    print(f"{ref}: not here, pulling", file=sys.stderr)
    return client.images.pull(ref, platform=platform).name


def _run(args: argparse.Namespace) -> int:
    env = [e for path in args.env_file or () for e in parse_env_file(path)] + (args.env or [])
    mounts = [parse_mount(m) for m in args.mount or ()] + [
        parse_volume(v) for v in args.volume or ()
    ]
    request = RunRequest(args.name or f"run-{uuid.uuid4().hex[:12]}")
    for extension in run_extensions():
        extension.apply(args, request)
    if not args.command:
        raise InvalidArgument("run needs a command after the image, e.g. run IMAGE echo hi")
    spec = run_spec(
        args.command,
        env=env,
        workdir=args.workdir,
        user=args.user,
        tty=args.tty,
        memory=parse_memory(args.memory) if args.memory else None,
        cpus=args.cpus,
        mounts=mounts,
        spec_options=request.spec_options,
    )
    with make_client(args, **request.client_options) as client:
        image = _ensure_image(client, args.image, args.platform)
        container = client.new_container(
            request.container_id,
            spec,
            image=image,
            labels=_labels(args.label),
            **request.container_options,
        )
        try:
            return _start(args, container, request)
        except BaseException:
            _remove(container, request.cleanup)
            raise


def _start(args: argparse.Namespace, container: Container, request: RunRequest) -> int:
    if args.detach:
        task = container.new_task(stdio=LogIO())
        task.start()
        for hook in request.after_start:
            hook(container, task)
        print(container.id)
        return 0
    task = container.new_task(stdio=stdio_for(terminal=args.tty, interactive=args.interactive))
    try:
        for hook in request.after_start:
            hook(container, task)
        status = attach(task, terminal=args.tty, interactive=args.interactive)
    finally:
        if task.io is not None:
            task.io.close()
    if args.rm:
        _remove(container, request.cleanup)
    return status.code


def _remove(container: Container, cleanup: Sequence[Callable[[], None]] = ()) -> None:
    with contextlib.suppress(NotFound):
        container.task().force_delete()
    for step in reversed(cleanup):
        step()
    with contextlib.suppress(NotFound):
        container.delete()


def _status(container: Container) -> str:
    try:
        return container.task().status().value
    except NotFound:
        return "created"


def _ps(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    with make_client(args) as client:
        for container in client.containers():
            status = _status(container)
            if not args.all and status not in ("running", "paused", "pausing"):
                continue
            info = container.info()
            process = (info.spec or {}).get("process") or {}
            rows.append(
                {
                    "id": container.id,
                    "image": info.image,
                    "status": status,
                    "command": " ".join(process.get("args") or []),
                    "labels": dict(info.labels),
                }
            )
    if args.format == "json":
        print_json_lines(rows)
    else:
        print_table(
            ["CONTAINER", "IMAGE", "STATUS", "COMMAND"],
            [[r["id"], r["image"], r["status"], r["command"]] for r in rows],
        )
    return 0


def _exec(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        container = client.load_container(args.container)
        task = container.task()
        process = dict(container.spec()["process"])
        process["args"] = list(args.command)
        process["terminal"] = args.tty
        if args.env:
            process["env"] = [*process.get("env", []), *args.env]
        if args.workdir:
            process["cwd"] = args.workdir
        stdio = stdio_for(terminal=args.tty, interactive=args.interactive)
        extra = task.exec(f"exec-{uuid.uuid4().hex[:12]}", process, stdio=stdio)
        try:
            status = attach(extra, terminal=args.tty, interactive=args.interactive)
        finally:
            if extra.io is not None:
                extra.io.close()
            with contextlib.suppress(Error):
                extra.delete()
    return status.code


def _logs(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    with make_client(args) as client:
        for chunk in client.load_container(args.container).logs(follow=args.follow):
            out.write(chunk)
            out.flush()
    return 0


def _each(args: argparse.Namespace, act: Callable[[Container], object]) -> int:
    failed = 0
    with make_client(args) as client:
        for container_id in args.containers:
            try:
                act(client.load_container(container_id))
            except Error as error:
                if len(args.containers) == 1:
                    raise
                print(f"libcontainerd: {container_id}: {error}", file=sys.stderr)
                failed += 1
            else:
                print(container_id)
    return 1 if failed else 0


def _stop(args: argparse.Namespace) -> int:
    return _each(args, lambda c: c.task().stop(args.time))


def _signal_number(text: str) -> int:
    if text.isdigit():
        return int(text)
    name = text.upper() if text.upper().startswith("SIG") else f"SIG{text.upper()}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidArgument(f"{text!r} is not a signal name or number") from None


def _kill(args: argparse.Namespace) -> int:
    number = _signal_number(args.signal)
    return _each(args, lambda c: c.task().kill(number, all=True))


def _pause(args: argparse.Namespace) -> int:
    return _each(args, lambda c: c.task().pause())


def _resume(args: argparse.Namespace) -> int:
    return _each(args, lambda c: c.task().resume())


def _rm_one(container: Container, force: bool) -> None:
    try:
        task = container.task()
    except NotFound:
        task = None
    if task is not None:
        if force:
            task.force_delete()
        elif task.status().value in ("stopped", "created"):
            task.delete()
        else:
            raise FailedPrecondition(
                f"container {container.id} is running; stop it first or use rm -f"
            )
    container.delete()


def _rm(args: argparse.Namespace) -> int:
    return _each(args, lambda c: _rm_one(c, args.force))


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run a command in a new container")
    run.add_argument("--rm", action="store_true", help="remove the container when it exits")
    run.add_argument("-d", "--detach", action="store_true", help="print the id, do not wait")
    run.add_argument("-t", "--tty", action="store_true", help="give it a pseudo-terminal")
    run.add_argument("-i", "--interactive", action="store_true", help="pass our stdin to it")
    run.add_argument("--name", help="container id (default: run-<random>)")
    run.add_argument("-e", "--env", action="append", metavar="KEY=VALUE")
    run.add_argument("--env-file", action="append", metavar="FILE")
    run.add_argument(
        "--mount", action="append", metavar="type=bind,source=S,target=T[,ro]", help="a mount"
    )
    run.add_argument("-v", "--volume", action="append", metavar="HOST:CONTAINER[:ro]")
    run.add_argument("-w", "--workdir")
    run.add_argument("-u", "--user", help="uid[:gid]")
    run.add_argument("-m", "--memory", help="memory limit, e.g. 256m")
    run.add_argument("--cpus", type=float, help="CPU limit, e.g. 1.5")
    run.add_argument("--platform", help="platform to pull when the image is missing")
    run.add_argument("-l", "--label", action="append", metavar="KEY=VALUE")
    for extension in run_extensions():
        extension.add_arguments(run.add_argument_group(type(extension).__name__))
    run.add_argument("image")
    run.add_argument("command", nargs=argparse.REMAINDER)
    run.set_defaults(handler=_run)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the container commands."""
    _add_run(sub)

    ps = sub.add_parser("ps", help="list containers (running ones unless -a)")
    ps.add_argument("-a", "--all", action="store_true")
    ps.add_argument("--format", choices=("table", "json"), default="table")
    ps.set_defaults(handler=_ps)

    exec_ = sub.add_parser("exec", help="run another command in a running container")
    exec_.add_argument("-t", "--tty", action="store_true")
    exec_.add_argument("-i", "--interactive", action="store_true")
    exec_.add_argument("-e", "--env", action="append", metavar="KEY=VALUE")
    exec_.add_argument("-w", "--workdir")
    exec_.add_argument("container")
    exec_.add_argument("command", nargs=argparse.REMAINDER)
    exec_.set_defaults(handler=_exec)

    logs = sub.add_parser("logs", help="print the output of a detached container")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until it exits")
    logs.add_argument("container")
    logs.set_defaults(handler=_logs)

    stop = sub.add_parser("stop", help="SIGTERM, then SIGKILL after --time seconds")
    stop.add_argument("-t", "--time", type=float, default=10.0)
    stop.add_argument("containers", nargs="+", metavar="CONTAINER")
    stop.set_defaults(handler=_stop)

    kill = sub.add_parser("kill", help="send a signal to every process of containers")
    kill.add_argument("-s", "--signal", default="KILL")
    kill.add_argument("containers", nargs="+", metavar="CONTAINER")
    kill.set_defaults(handler=_kill)

    for name, handler, text in (
        ("pause", _pause, "freeze containers"),
        ("resume", _resume, "thaw paused containers"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("containers", nargs="+", metavar="CONTAINER")
        parser.set_defaults(handler=handler)

    rm = sub.add_parser("rm", help="remove containers (-f: even running ones)")
    rm.add_argument("-f", "--force", action="store_true")
    rm.add_argument("containers", nargs="+", metavar="CONTAINER")
    rm.set_defaults(handler=_rm)
