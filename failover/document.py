"""The parsed YAML document of ``failover.yaml``, before its models: the alias guard and
the parse cache (issue 28).

**Aliases.** YAML aliases share one node among many places; expanded (as interpolation
and validation do) a dozen lines can grow exponentially ("billion laughs") and hang
every cron-driven ``check``. The guard measures what the aliases add, not the file:
the values as written (each mapping or list counted once, however often it is
referred to) against the values once every alias is expanded. A document is refused
when the expansion is far beyond what is written (more than ``BLOWUP`` times, and more
than ``FLOOR`` values), or when it refers to itself; a large honest file (10,000
services, each with its settings) expands to exactly what it writes, and loads.

**Cache.** libyaml parses, but the document is built in Python: 0.27 ms of CPU per
service with full settings, most of a round's budget at 10,000 services. The parsed
document is kept as JSON beside the state (``<state_dir>/config.parsed.json``) with the
SHA-256 of the text it came from: a ``check`` from cron reads the text, hashes it and
takes the document from JSON (50x faster) while the text is unchanged. ``${ENV}`` is
filled in after, every time; only a document that JSON keeps exactly is cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from providers.util import write_private

FLOOR = 100_000  # below this many values, aliases may share as they like
BLOWUP = 16  # expanded values per value written, beyond which aliases are a bomb
_FORMAT = 1  # bumped when what is cached changes meaning


def _values(node: dict[Any, Any] | list[Any]) -> Any:
    # Keys are scalars: YAML refuses a mapping or a list as a key ("unhashable").
    return node.values() if isinstance(node, dict) else node


def _shares(data: Any) -> bool:
    """Does any mapping or list appear in two places (an alias)? Most files: no."""
    seen: set[int] = set()
    stack = [data]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            return True
        seen.add(id(node))
        stack.extend(v for v in _values(node) if isinstance(v, dict | list))
    return False


def expansion(data: Any) -> tuple[int, int | None]:
    """(values as written, values once aliases are expanded), keys counted as values;
    None for the second when the document contains itself (expands without end).
    Iterative: deep nesting cannot overflow the stack here."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    written = 1
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            sizes[key] = 1 + sum(
                sizes[id(v)] if isinstance(v, dict | list) else 1 for v in _values(node)
            )
            if isinstance(node, dict):
                sizes[key] += len(node)
            continue
        if key in sizes:
            continue
        if key in open_:
            # Met again before it was finished: it is inside itself.
            return written, None
        open_.add(key)
        written += 2 * len(node) if isinstance(node, dict) else len(node)
        stack.append((node, True))
        stack.extend((v, False) for v in _values(node) if isinstance(v, dict | list))
    return written, sizes.get(id(data), 1)


def blowup(data: Any) -> str | None:
    """Why the document's aliases expand too far, or None."""
    if not isinstance(data, dict | list) or not _shares(data):
        return None  # nothing is written once and read in two places: nothing expands
    written, expanded = expansion(data)
    if expanded is None:
        return "a YAML alias (*name) refers to a mapping or list that contains it"
    if expanded > FLOOR and expanded > BLOWUP * written:
        return (
            f"{written} values written expand to {expanded} once YAML aliases (*name) are "
            f"expanded (more than {BLOWUP} times as many)"
        )
    return None


# --------------------------------------------------------------------------- cache


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def cached(path: Path | None, text: str) -> Any:
    """The document parsed from ``text`` earlier, or None (no cache, another text, a
    cache that cannot be read: the text is parsed again)."""
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            kept = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or kept.get("format") != _FORMAT:
        return None
    if kept.get("sha256") != _digest(text):
        return None
    return kept.get("document")


def keep(path: Path | None, text: str, data: Any) -> None:
    """Remember ``data`` as the document of ``text``, when the state directory exists
    (``validate`` makes none) and JSON keeps the document exactly (no dates, no keys
    that are numbers)."""
    if path is None or not path.parent.is_dir():
        return
    try:
        body = json.dumps(data, allow_nan=False)
        if json.loads(body) != data:
            return
    except (TypeError, ValueError):
        return
    doc = f'{{"format": {_FORMAT}, "sha256": "{_digest(text)}", "document": {body}}}'
    with contextlib.suppress(OSError):  # a cache that cannot be written is no cache
        write_private(path, doc)
