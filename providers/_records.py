"""A provider's record file, parsed once while it stays the same file (issue 28).

A round asks a provider about every live host; re-reading and re-parsing the whole
record file for each of them made a round cost N times the file (N^2 overall). The
parsed document is kept with the file's identity (inode, size, mtime, ctime, taken from
the descriptor the text was read through) and used again while a ``stat`` of the path
still shows that identity. Writers replace the file (a new inode) and hand the cache
the cache is handed what they wrote, so a provider sees its own writes at once (without
parsing them back) and another process's at its next read.

The cached document is shared by every thread that reads it: readers must not change
it. A read-modify-write reads its own copy with ``fresh=True`` under the writer's lock.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

_Identity = tuple[int, int, int, int]


def _identity(st: os.stat_result) -> _Identity:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class JsonFile:
    """``path`` as a parsed JSON document, re-read only when the file changed."""

    def __init__(self, path: Path, check: Callable[[Any], None] | None = None) -> None:
        """``check``: raises ValueError for a document of the wrong shape; run once per
        parse, so a cached document was checked when it was read."""
        self.path = path
        self._check = check
        self._lock = threading.Lock()
        self._seen: _Identity | None = None
        self._doc: Any = None

    def read(self, *, fresh: bool = False) -> Any:
        """The document (None when the file does not exist). Raises OSError and
        ValueError as reading and parsing do. ``fresh``: a private copy, read now."""
        if not fresh:
            try:
                seen = _identity(os.stat(self.path))
            except FileNotFoundError:
                return None
            with self._lock:
                if seen == self._seen:
                    return self._doc
        try:
            with open(self.path, "rb") as fh:
                seen = _identity(os.fstat(fh.fileno()))
                doc = json.loads(fh.read())
        except FileNotFoundError:
            return None
        if self._check is not None:
            self._check(doc)
        if not fresh:
            with self._lock:
                self._seen, self._doc = seen, doc
        return doc

    def wrote(self, doc: Any) -> None:
        """``doc`` is what was just written to the path (replaced as a whole), under the
        lock every writer holds: it is the document now, without parsing it back. The
        caller hands it over and changes it no more."""
        try:
            seen = _identity(os.stat(self.path))
        except OSError:
            seen = None
        with self._lock:
            self._seen, self._doc = seen, doc
