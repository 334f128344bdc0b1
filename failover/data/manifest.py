"""A backup's manifest, and the proof that we wrote it.

A store is a place other people can write to (a bucket's other users, an attacker with
one store's credentials, a mount that went away). So a manifest is believed only when
it verifies:

- with an ``encryption_key``: an HMAC-SHA256 under a key derived from it with HKDF
  (``auth: "hmac-sha256:..."``). Nobody without the key can write a manifest we accept,
  and every digest a store sees (each chunk's, the whole stream's) is keyed too, so
  nothing in a store lets anyone test a guess of the plain data;
- without a key: a SHA-256 over the same canonical form (``auth: "sha256:..."``). That
  catches a damaged or hand-edited manifest, not a forger who recomputes it;
- a version 1 manifest (written before authentication existed) carries no proof: it is
  believed only as far as its chunk and stream checksums go, is never the reason to
  prune an authenticated backup, and is ignored once an authenticated backup older than
  it exists (nothing writes version 1 any more, so a newer one is a forgery).

The proof covers every field, the chunk list included as an ordered list of
``[size, id]``. Up to version 2 the size is the stored chunk's and the id its digest
(the chunks live in the backup's folder); from version 3 (:mod:`failover.data.chunks`)
the size is the plain chunk's and the id is its name in the store's shared chunk pool,
a hash of its plain content (keyed when there is a key), and ``new_bytes`` says what
the backup added to the first store it was written to.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any

VERSION = 3
_VERSIONS = (1, 2, 3)
_SEAL_OVERHEAD = 12 + 16  # AES-GCM nonce and tag
_ID = re.compile(r"^[0-9]{8}T[0-9]{6}(\.[0-9]{6})?Z-[0-9a-f]{1,32}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
_SALT = b"failover-data"
_SKEW = 86400.0  # clocks disagree; a day ahead is not a clock, it is a forgery


def _later() -> time.struct_time:
    return time.gmtime(time.time() + _SKEW)


class Untrusted(ValueError):
    """A manifest that does not parse or does not verify; the message says why, after
    the backup's name ("backup X in store Y <message>")."""


def _derive(secret: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info).derive(secret)


class Keys:
    """Everything derived from ``encryption_key`` (or nothing without one)."""

    def __init__(self, key: str | None) -> None:
        self.enabled = key is not None
        self.aead = self.mac = self.digest_key = self.chunk_id = self.index_mac = b""
        self.check: str | None = None
        if key is not None:
            self.aead = _derive(key.encode(), b"aes-256-gcm")
            self.mac = _derive(key.encode(), b"manifest-mac")
            self.digest_key = _derive(key.encode(), b"digest")
            # Separate keys: a chunk's name and the pool's index prove nothing else.
            self.chunk_id = _derive(key.encode(), b"chunk-id")
            self.index_mac = _derive(key.encode(), b"index-mac")
            self.check = hmac.new(self.aead, b"failover key check", "sha256").hexdigest()[:16]

    def hasher(self, manifest: Manifest) -> Any:
        """The digest of chunks and stream for ``manifest``: keyed from version 2 on
        when it is encrypted, plain SHA-256 otherwise."""
        if manifest.version >= 2 and manifest.encrypted:
            return hmac.new(self.digest_key, digestmod="sha256")
        return hashlib.sha256()

    def digest(self, manifest: Manifest, data: bytes) -> str:
        h = self.hasher(manifest)
        h.update(data)
        out: str = h.hexdigest()
        return out

    def sign(self, manifest: Manifest) -> str:
        body = manifest.signed()
        if self.enabled:
            return "hmac-sha256:" + hmac.new(self.mac, body, "sha256").hexdigest()
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def verify(self, manifest: Manifest) -> None:
        """Raise ``Untrusted`` unless ``manifest`` is ours (see the module's text)."""
        if manifest.encrypted and self.enabled and manifest.key_check != self.check:
            raise Untrusted("was encrypted with a different encryption_key")
        if manifest.version < 2:
            return
        auth = manifest.auth or ""
        if auth.startswith("hmac-sha256:") and not self.enabled:
            raise Untrusted("is authenticated with an encryption_key and none is set")
        if auth.startswith("sha256:") and self.enabled:
            raise Untrusted("carries no proof of the encryption_key (written without one)")
        if not hmac.compare_digest(auth, self.sign(manifest)):
            raise Untrusted("does not verify: forged or damaged (its manifest is not ours)")


@dataclass
class Manifest:
    service: str
    id: str
    taken: float  # epoch seconds
    length: int  # bytes of the plain stream
    sha256: str  # of the plain stream (keyed HMAC-SHA256 when encrypted, version 2)
    chunk_size: int
    chunks: list[list[Any]] = field(default_factory=list)  # [stored size, stored digest]
    encrypted: bool = False
    key_check: str | None = None
    version: int = VERSION
    auth: str | None = None
    new_bytes: int = 0  # version 3: what this backup added to its first store

    @property
    def deduped(self) -> bool:
        """Version 3: chunks named by content in the store's pool, shared by backups."""
        return self.version >= 3

    @property
    def taken_at(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.taken))

    @property
    def legacy(self) -> bool:
        return self.version < 2

    def key(self, name: str) -> str:
        return f"{self.service}/{self.id}/{name}"

    def summary(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "id": self.id,
            "taken_at": self.taken_at,
            "bytes": self.length,
            "sha256": self.sha256,
            "new_bytes": self.new_bytes if self.deduped else sum(c[0] for c in self.chunks),
            "chunks": len(self.chunks),
        }

    def _doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["bytes"] = doc.pop("length")
        if self.legacy:
            doc.pop("auth")
        if not self.deduped:
            doc.pop("new_bytes")  # not in the versions before it: their proofs stay valid
        return doc

    def signed(self) -> bytes:
        """The canonical form the proof covers: every field but the proof."""
        doc = self._doc()
        doc.pop("auth", None)
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> bytes:
        return json.dumps(self._doc(), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """A manifest whose every field has the right type and whose chunk list fits
        its length; ``Untrusted`` naming the first thing that does not."""
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise Untrusted("is malformed: not JSON") from None
        if not isinstance(raw, dict):
            raise Untrusted("is malformed: not an object")
        version = raw.get("version")
        if version not in _VERSIONS or isinstance(version, bool):
            raise Untrusted(f"is malformed: unknown version {version!r}")
        kinds: dict[str, Any] = {
            "service": str,
            "id": str,
            "taken": (int, float),
            "bytes": int,
            "sha256": str,
            "chunk_size": int,
            "chunks": list,
            "encrypted": bool,
            "key_check": (str, type(None)),
        }
        if version >= 2:
            kinds["auth"] = str
        if version >= 3:
            kinds["new_bytes"] = int
        for name, kind in kinds.items():
            value = raw.get(name)
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise Untrusted(f"is malformed: {name} is {type(value).__name__}")
        raw["length"] = raw.pop("bytes")
        manifest = cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        _consistent(manifest)
        return manifest


def _consistent(m: Manifest) -> None:
    """The chunk list a real writer makes for this length: its count and sizes."""
    if not _ID.match(m.id) or not _HEX.match(m.sha256):
        raise Untrusted("is malformed: bad id or stream digest")
    if not math.isfinite(m.taken) or m.taken < 0 or m.length < 0 or m.chunk_size <= 0:
        raise Untrusted("is malformed: bad time, length or chunk size")
    if m.taken > time.time() + _SKEW or m.id[:15] > time.strftime("%Y%m%dT%H%M%S", _later()):
        raise Untrusted("is dated in the future: not a backup anyone took")
    if m.deduped:
        _consistent_pool(m)
        return
    if len(m.chunks) != -(-m.length // m.chunk_size):
        raise Untrusted(f"is malformed: {len(m.chunks)} chunks for {m.length} bytes")
    left = m.length
    for index, entry in enumerate(m.chunks):
        plain = min(m.chunk_size, left)
        left -= plain
        want = plain + (_SEAL_OVERHEAD if m.encrypted else 0)
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and type(entry[0]) is int
            and isinstance(entry[1], str)
            and _HEX.match(entry[1])
        ):
            raise Untrusted(f"is malformed: chunk {index} is not [size, digest]")
        if entry[0] != want:
            raise Untrusted(f"is malformed: chunk {index} has {entry[0]} bytes, not {want}")


def _consistent_pool(m: Manifest) -> None:
    """Version 3: each chunk ``[plain size, name]``, no larger than the chunker makes,
    the sizes adding up to the length."""
    if m.new_bytes < 0:
        raise Untrusted("is malformed: negative new_bytes")
    biggest = 4 * max(m.chunk_size, 256)  # FastCDC's maximum (see failover.data.chunks)
    total = 0
    for index, entry in enumerate(m.chunks):
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and type(entry[0]) is int
            and 0 < entry[0] <= biggest
            and isinstance(entry[1], str)
            and _HEX.match(entry[1])
        ):
            raise Untrusted(f"is malformed: chunk {index} is not [size, name]")
        total += entry[0]
    if total != m.length:
        raise Untrusted(f"is malformed: its chunks add up to {total} bytes, not {m.length}")
