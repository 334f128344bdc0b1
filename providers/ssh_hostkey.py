"""Reading a pinned ``host_key`` as people paste it, and refusing one that is no key.

The README (and every error message) says: pin the line ``ssh-keyscan HOST`` prints,
checked against the machine's console. That line starts with the host
(``203.0.113.10 ssh-ed25519 AAAA...``, ``[203.0.113.10]:2222 ...``, or a hashed
``|1|...``); the pin is the rest. The key itself is parsed here, at ``validate``, with
asyncssh when it is installed (the ``[ssh]`` extra) and by its wire format otherwise, so
a placeholder such as the starter's example fails at ``validate``, not at the first
connection (``doctor``'s "unusable").
"""

from __future__ import annotations

import base64
import binascii
import re
import struct

_KEY_TYPE = re.compile(r"(ssh|ecdsa|sk)-[a-z0-9@.-]+")
_CA = "@cert-authority"


def _wire_type(blob: bytes) -> str:
    """The key type a public key blob names first (its wire format, RFC 4253 6.6)."""
    if len(blob) < 4:
        raise ValueError("too short")
    (size,) = struct.unpack(">I", blob[:4])
    if size > len(blob) - 4:
        raise ValueError("truncated")
    return blob[4 : 4 + size].decode("ascii", errors="replace")


def _check_key(kind: str, data: str) -> None:
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{data[:24]}...: not base64") from None
    if _wire_type(blob) != kind:
        raise ValueError(f"the key data is not a {kind} key")
    try:
        import asyncssh
    except ImportError:  # the [ssh] extra: without it, the wire format is all we check
        return
    try:
        asyncssh.import_public_key(f"{kind} {data}")
    except (ValueError, asyncssh.Error) as exc:
        raise ValueError(f"not a usable {kind} key: {exc}") from None


def normalize_host_key(text: str) -> str:
    """The pin in ``text`` (an ``ssh-keyscan`` line, or its key part, optionally after
    ``@cert-authority``), as ``[@cert-authority ]TYPE BASE64``; ValueError when the key
    cannot be read."""
    words = text.split()
    marker = []
    if words and words[0] == _CA:
        marker, words = [_CA], words[1:]
    if len(words) >= 3 and not _KEY_TYPE.fullmatch(words[0]) and _KEY_TYPE.fullmatch(words[1]):
        words = words[1:]  # `ssh-keyscan` puts the host first
    if len(words) < 2 or not _KEY_TYPE.fullmatch(words[0]):
        raise ValueError(
            "expected a public key line such as 'ssh-ed25519 AAAAC3Nza...' (the line "
            "`ssh-keyscan HOST` prints, checked against the machine's console)"
        )
    try:
        _check_key(words[0], words[1])
    except ValueError as exc:
        raise ValueError(
            f"{exc}: paste the line `ssh-keyscan HOST` prints, after checking its "
            "fingerprint on the machine's console"
        ) from None
    return " ".join([*marker, words[0], words[1]])
