"""The garbage-collection labels that keep an image's content graph alive in containerd."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from libcontainerd.types import descriptor as media

__all__ = ["child_gc_labels"]


def _child_label_kind(child: Mapping[str, Any], index: int) -> str:
    media_type = str(child.get("mediaType") or "")
    if media.is_config(media_type):
        return "config"
    if media.is_manifest(media_type):
        return f"m.{index}"
    if media.is_layer(media_type):
        return f"l.{index}"
    return str(index)


def child_gc_labels(media_type: str, data: bytes) -> dict[str, str]:
    """The ``containerd.io/gc.ref.content.*`` labels that keep a manifest's children alive.

    An index refers to its manifests (``m.<i>``), a manifest to its config
    (``config``) and layers (``l.<i>``), numbered by position, as containerd's own
    garbage collector expects. Anything that is not a manifest or index gets none.
    """
    if not (media.is_index(media_type) or media.is_manifest(media_type)):
        return {}
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(document, dict):
        return {}
    children: list[Any] = []
    manifests, layers = document.get("manifests"), document.get("layers")
    if media.is_index(media_type):
        children = list(manifests) if isinstance(manifests, list) else []
    else:
        if isinstance(document.get("config"), dict):
            children.append(document["config"])
        if isinstance(layers, list):
            children.extend(layers)
    labels: dict[str, str] = {}
    layer_index = 0
    for position, child in enumerate(children):
        if not isinstance(child, dict) or not isinstance(child.get("digest"), str):
            continue
        if media.is_index(media_type):
            kind = f"m.{position}"
        else:
            kind = _child_label_kind(child, layer_index)
            if kind.startswith("l."):
                layer_index += 1
        labels[f"containerd.io/gc.ref.content.{kind}"] = child["digest"]
    return labels
