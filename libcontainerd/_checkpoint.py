"""The one check both backends make of a checkpoint directory given for a restore."""

from __future__ import annotations

from pathlib import Path

from libcontainerd.errors import InvalidArgument

__all__ = ["restore_dir"]


def restore_dir(checkpoint_dir: Path | str) -> Path:
    """``checkpoint_dir`` as a Path, if it is an existing absolute directory.

    Relative paths are refused rather than resolved: the runtime or daemon that reads the
    directory does not share the caller's working directory.
    """
    path = Path(checkpoint_dir)
    if not path.is_absolute() or not path.is_dir():
        raise InvalidArgument(
            f"checkpoint_dir {str(path)!r} must be an existing absolute directory written by "
            "create_checkpoint"
        )
    return path
