"""Typed progress of image transfers, one value per change of one blob."""

from __future__ import annotations

import enum

import attrs

__all__ = ["ProgressEvent", "ProgressKind"]


class ProgressKind(enum.Enum):
    """What happened to a blob."""

    RESOLVED = "resolved"
    WAITING = "waiting"
    DOWNLOADING = "downloading"
    UPLOADING = "uploading"
    VERIFYING = "verifying"
    DONE = "done"
    EXISTS = "exists"


@attrs.frozen
class ProgressEvent:
    """Progress of one blob: ``current`` of ``total`` bytes (``total`` is 0 when unknown)."""

    kind: ProgressKind
    digest: str
    media_type: str = ""
    current: int = 0
    total: int = 0
    ref: str = ""
