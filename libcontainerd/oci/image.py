"""Image configuration in a runtime spec: how an image's ``Env``, ``WorkingDir``, ``User``,
``Entrypoint`` and ``Cmd`` become the container's process.

Two entry points, one rule set:

* :func:`with_image_config` is a spec option: the image config *sets* the process (a later
  option overrides it), as when a spec is built for an image from scratch.
* :func:`spec_with_image` is what ``new_container(id, spec, image=ref)`` does on every
  backend: the image config *fills what the caller's spec leaves at its defaults*, the way
  containerd's ``WithImageConfig`` fills a default spec:

  ==========  ==================================================================
  field       result
  ==========  ==================================================================
  args        the spec's ``process.args`` when non-empty, else Entrypoint + Cmd
  env         the image's ``Env`` (or the default ``PATH``), then each entry of
              the spec's ``process.env`` replacing or adding its variable; the
              default spec's own ``PATH`` entry does not replace the image's
  cwd         the spec's ``process.cwd`` unless it is ``/``, else ``WorkingDir``
  user        the spec's ``process.user`` unless it is root (uid 0, gid 0, no
              other groups), else the image's ``User``
  root.path   the image's root filesystem
  ==========  ==================================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from libcontainerd.errors import InvalidArgument
from libcontainerd.oci.fields import (
    check_abs_path,
    check_env_entries,
    check_str,
    merge_env,
    process_section,
    str_list,
)
from libcontainerd.oci.options import with_rootfs, with_user
from libcontainerd.oci.spec import DEFAULT_PATH_ENV, Spec, SpecOpt, apply_options

__all__ = ["spec_with_image", "with_image_config"]


def _image_list(config: Mapping[str, Any], key: str) -> list[str]:
    value = config.get(key)
    if value is None:
        return []
    return str_list(value, f"image config {key}")


def with_image_config(
    config: Mapping[str, Any],
    *,
    rootfs: Path | str | None = None,
    args: Sequence[str] | None = None,
) -> SpecOpt:
    """Apply an OCI image configuration: the whole config JSON (with its ``"config"`` object)
    or just that inner object.

    ``Entrypoint`` + ``Cmd`` become the process arguments (``args`` replaces ``Cmd``, as a
    command line after the image name does); ``Env`` is merged over the spec's environment;
    ``WorkingDir`` becomes the working directory (``/`` when empty); ``User`` is resolved as
    :func:`with_user` does, against ``rootfs``. Options after this one override the image,
    e.g. ``with_env`` for a variable the image also sets. An image with neither
    ``Entrypoint`` nor ``Cmd`` leaves the arguments unchanged.
    """
    inner = _inner_config(config)
    entrypoint = _image_list(inner, "Entrypoint")
    cmd = _image_list(inner, "Cmd") if args is None else str_list(args, "args")
    image_env = check_env_entries(_image_list(inner, "Env"), "image config Env")
    workdir = inner.get("WorkingDir") or "/"
    check_abs_path(workdir, "image config WorkingDir")
    user = inner.get("User") or ""
    check_str(user, "image config User", allow_empty=True)
    process_args = entrypoint + cmd

    def opt(spec: Spec) -> None:
        process = process_section(spec)
        process["env"] = merge_env(process.get("env") or [], image_env)
        if process_args:
            process["args"] = list(process_args)
        process["cwd"] = workdir
        if user:
            with_user(user, rootfs=rootfs)(spec)

    return opt


def _inner_config(config: object) -> Mapping[str, Any]:
    if not isinstance(config, Mapping):
        raise InvalidArgument(f"image config must be a mapping, got {type(config).__name__}")
    inner: object = config
    if "config" in config or "rootfs" in config or "architecture" in config:
        inner = config.get("config")
        if inner is None:
            inner = {}
    if not isinstance(inner, Mapping):
        raise InvalidArgument(f"image config 'config' must be an object, got {inner!r}")
    return inner


def _is_default_user(user: object) -> bool:
    if not isinstance(user, Mapping):
        return user is None
    extra = list(user.get("additionalGids") or [])
    return (
        user.get("uid", 0) == 0
        and user.get("gid", 0) == 0
        and not user.get("username")
        and extra in ([], [0])
    )


def _copy_containers(value: Any) -> Any:
    """``value`` with every dict and list copied (a spec's only mutable JSON parts).

    Several times cheaper than ``copy.deepcopy`` on a spec, which matters once per
    container; anything else (strings, numbers, tuples) is shared, as it cannot change.
    """
    if isinstance(value, dict):
        return {key: _copy_containers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_containers(item) for item in value]
    return value


def spec_with_image(
    spec: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    root_path: str | os.PathLike[str],
    rootfs: Path | str | None = None,
) -> Spec:
    """A copy of ``spec`` completed from the image ``config`` (see the module docstring).

    ``root_path`` becomes ``root.path`` (an absolute path, or relative to the bundle);
    ``rootfs`` is where the image's ``/etc/passwd`` is read to resolve a user name
    (default: ``root_path`` when absolute). ``spec`` is not modified.
    """
    inner = _inner_config(config)
    entrypoint = _image_list(inner, "Entrypoint")
    cmd = _image_list(inner, "Cmd")
    image_env = check_env_entries(_image_list(inner, "Env"), "image config Env")
    workdir = inner.get("WorkingDir") or "/"
    check_abs_path(workdir, "image config WorkingDir")
    user = check_str(inner.get("User") or "", "image config User", allow_empty=True)
    result: Spec = _copy_containers(dict(spec))
    process = process_section(result)
    if not process.get("args") and entrypoint + cmd:
        process["args"] = entrypoint + cmd
    own_env = [e for e in process.get("env") or [] if e != DEFAULT_PATH_ENV]
    base_env = image_env or [DEFAULT_PATH_ENV]
    process["env"] = merge_env(base_env, own_env)
    if process.get("cwd") in (None, "", "/"):
        process["cwd"] = workdir
    opts: list[SpecOpt] = [with_rootfs(root_path)]
    if user and _is_default_user(process.get("user")):
        lookup = rootfs if rootfs is not None else _absolute(root_path)
        opts.append(with_user(user, rootfs=lookup))
    return apply_options(result, *opts, atomic=False)  # result is this call's own copy


def _absolute(path: str | os.PathLike[str]) -> Path | None:
    text = os.fspath(path)
    return Path(text) if text.startswith("/") else None
