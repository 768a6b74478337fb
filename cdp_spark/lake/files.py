"""Small file-system helpers shared by the writers that promise durability (serving store, landing spool).

Example:
    >>> import tempfile
    >>> fsync_path(tempfile.mkdtemp())   # a folder: makes a rename or a new file inside it durable
"""
from __future__ import annotations

import os


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file, or a folder (so that a rename or a file created inside it survives a power cut)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
