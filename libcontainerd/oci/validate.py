"""Checking a caller's runtime spec at the public boundary, before any backend uses it.

A spec reaches a backend as arbitrary Python data. Both backends call :func:`validate_spec`
(and :func:`validate_process` for ``exec``) first, so a malformed spec is an
:class:`~libcontainerd.errors.InvalidArgument` naming the field on either backend, never an
``AttributeError`` deep inside one of them, a ``RecursionError`` from the JSON encoder, or a
runtime's own complaint about a field of the wrong type.

The rules: the spec is JSON data (objects with string keys, arrays, strings, finite numbers,
booleans, null) nested at most :data:`MAX_SPEC_DEPTH` levels; the fields of the OCI runtime
spec that this SDK and the runtimes read have the type the runtime spec gives them. Fields
the SDK does not know (another platform's section, a newer spec version) are passed through
as long as they are JSON data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeAlias

from libcontainerd.errors import InvalidArgument

__all__ = ["MAX_SPEC_DEPTH", "validate_process", "validate_spec"]

#: How deeply objects and arrays may nest in a spec; real specs stay below 10.
MAX_SPEC_DEPTH = 64

# Go decodes spec integers into int64 / uint64 fields; anything outside both is unusable.
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

# The expected shape of the known fields: a type, a one-element list (an array of that
# shape), or a dict (an object with those known keys; other keys pass as JSON data).
# "*" as a key gives the shape of every value of an object with free keys.
_Shape: TypeAlias = Any

_STRINGS: _Shape = [str]
_INTS: _Shape = [int]
_STRING_MAP: _Shape = {"*": str}
_ID_MAPPING: _Shape = [{"containerID": int, "hostID": int, "size": int}]

_PROCESS: _Shape = {
    "terminal": bool,
    "consoleSize": {"height": int, "width": int},
    "user": {"uid": int, "gid": int, "umask": int, "additionalGids": _INTS, "username": str},
    "args": _STRINGS,
    "commandLine": str,
    "env": _STRINGS,
    "cwd": str,
    "capabilities": {
        "bounding": _STRINGS,
        "effective": _STRINGS,
        "inheritable": _STRINGS,
        "permitted": _STRINGS,
        "ambient": _STRINGS,
    },
    "rlimits": [{"type": str, "hard": int, "soft": int}],
    "noNewPrivileges": bool,
    "apparmorProfile": str,
    "oomScoreAdj": int,
    "selinuxLabel": str,
}

_HOOKS: _Shape = [{"path": str, "args": _STRINGS, "env": _STRINGS, "timeout": int}]

_SPEC: _Shape = {
    "ociVersion": str,
    "process": _PROCESS,
    "root": {"path": str, "readonly": bool},
    "hostname": str,
    "domainname": str,
    "mounts": [
        {
            "destination": str,
            "type": str,
            "source": str,
            "options": _STRINGS,
            "uidMappings": _ID_MAPPING,
            "gidMappings": _ID_MAPPING,
        }
    ],
    "hooks": {
        "prestart": _HOOKS,
        "createRuntime": _HOOKS,
        "createContainer": _HOOKS,
        "startContainer": _HOOKS,
        "poststart": _HOOKS,
        "poststop": _HOOKS,
    },
    "annotations": _STRING_MAP,
    "linux": {
        "uidMappings": _ID_MAPPING,
        "gidMappings": _ID_MAPPING,
        "sysctl": _STRING_MAP,
        "resources": {
            "devices": [{"allow": bool, "type": str, "major": int, "minor": int, "access": str}],
            "memory": {
                "limit": int,
                "reservation": int,
                "swap": int,
                "kernel": int,
                "kernelTCP": int,
                "swappiness": int,
                "disableOOMKiller": bool,
            },
            "cpu": {
                "shares": int,
                "quota": int,
                "period": int,
                "realtimeRuntime": int,
                "realtimePeriod": int,
                "cpus": str,
                "mems": str,
            },
            "pids": {"limit": int},
            "unified": _STRING_MAP,
        },
        "cgroupsPath": str,
        "namespaces": [{"type": str, "path": str}],
        "devices": [
            {
                "type": str,
                "path": str,
                "major": int,
                "minor": int,
                "fileMode": int,
                "uid": int,
                "gid": int,
            }
        ],
        "seccomp": {"defaultAction": str, "architectures": _STRINGS},
        "rootfsPropagation": str,
        "maskedPaths": _STRINGS,
        "readonlyPaths": _STRINGS,
        "mountLabel": str,
    },
}


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _field(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _copy(value: object, shape: _Shape, path: str, depth: int) -> Any:
    """``value`` checked against ``shape`` and copied into plain dicts and lists."""
    if depth > MAX_SPEC_DEPTH:
        raise InvalidArgument(
            f"spec field {path} is nested more than {MAX_SPEC_DEPTH} levels deep; "
            "a runtime spec is a shallow JSON document, check how it was built"
        )
    if isinstance(shape, type):
        return _copy_scalar(value, shape, path, depth)
    if isinstance(shape, list):
        if not isinstance(value, (list, tuple)):
            raise InvalidArgument(
                f"spec field {path} must be an array, got {_type_name(value)} {value!r:.60}"
            )
        return [_copy(item, shape[0], f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if not isinstance(value, Mapping):
        raise InvalidArgument(
            f"spec field {path} must be an object, got {_type_name(value)} {value!r:.60}"
        )
    result: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise InvalidArgument(
                f"spec field {path or '(top level)'} has a key {key!r} that is not a str; "
                "JSON object keys are strings"
            )
        inner = shape.get(key, shape.get("*", object))
        result[key] = _copy(item, inner, _field(path, key), depth + 1)
    return result


def _copy_scalar(value: object, shape: type, path: str, depth: int) -> Any:
    if shape is object:  # a field the SDK does not know: any JSON data
        if isinstance(value, Mapping):
            return _copy(value, {}, path, depth)
        if isinstance(value, (list, tuple)):
            return _copy(value, [object], path, depth)
        if value is None or isinstance(value, (str, bool)):
            return value
        if isinstance(value, int):
            return _check_int(value, path)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidArgument(f"spec field {path} is {value}; JSON has no such number")
            return value
        raise InvalidArgument(
            f"spec field {path} is a {_type_name(value)}, which is not JSON data; use "
            "str, int, float, bool, None, lists and dicts"
        )
    if shape is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(
                f"spec field {path} must be an int, got {_type_name(value)} {value!r:.60}"
            )
        return _check_int(value, path)
    if not isinstance(value, shape):
        raise InvalidArgument(
            f"spec field {path} must be a {shape.__name__}, got {_type_name(value)} {value!r:.60}"
        )
    return value


def _check_int(value: int, path: str) -> int:
    if not _INT_MIN <= value <= _INT_MAX:
        raise InvalidArgument(
            f"spec field {path} = {value} does not fit in 64 bits; runtimes cannot read it"
        )
    return value


def validate_spec(spec: object) -> dict[str, Any]:
    """A plain-data copy of the runtime ``spec``, or ``InvalidArgument`` naming what is wrong.

    ``spec`` must be a mapping with a ``process`` object; see the module docstring for the
    rules.
    """
    if not isinstance(spec, Mapping):
        raise InvalidArgument(
            f"spec must be an OCI runtime spec dict (see libcontainerd.oci.generate_spec), "
            f"not {_type_name(spec)}"
        )
    if not isinstance(spec.get("process"), Mapping):
        raise InvalidArgument(
            "spec must have a 'process' object describing what the container runs "
            "(build the spec with libcontainerd.oci.generate_spec)"
        )
    result: dict[str, Any] = _copy(spec, _SPEC, "", 0)
    return result


def validate_process(process: object) -> dict[str, Any]:
    """A plain-data copy of an ``exec`` process object, or ``InvalidArgument``.

    The process needs non-empty ``args``; the field rules are those of ``spec.process``.
    """
    if not isinstance(process, Mapping):
        raise InvalidArgument(
            f"process must be an OCI process dict (e.g. the spec's 'process' with new args), "
            f"not {_type_name(process)}"
        )
    result: dict[str, Any] = _copy(process, _PROCESS, "process", 1)
    if not result.get("args"):
        raise InvalidArgument(
            "exec needs an OCI process object with non-empty 'args' "
            "(e.g. the spec's 'process' with new args)"
        )
    return result
