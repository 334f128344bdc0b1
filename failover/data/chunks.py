"""Chunks by content (format version 3): the backup stream is cut where its content
says (FastCDC, ``pyfastcdc``), so an insertion shifts only the chunks around it; each
chunk is compressed (zstandard), then sealed (AES-256-GCM) when a key is set, and named
by a hash of its plain content (an HMAC under a key derived from ``encryption_key`` when
there is one, so a store never learns a plain content hash). A chunk's name is its
address in the store's pool (``_dedup/<service>/chunks/<name>``), so a chunk a store
already holds is never sent again, whichever backup first sent it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator
from typing import Any

from failover.data.manifest import Keys

# Measured (README, "Data"): on 64 MB changed by 1% in five places, 1 MiB added 12 MB,
# 512 KiB 7.0, 256 KiB 3.2, 128 KiB 2.0 (restic: 9.9). 256 KiB: a quarter of 1 MiB's
# cost at ~3,300 chunks per GB; halving it again saves a third for twice the objects.
AVERAGE = 256 * 1024
_FLOOR = 256  # FastCDC's smallest average
_WINDOW = 8 * 1024 * 1024  # the stream is cut in windows of at least this much
_NONCE = 12
_LEVEL = 3


def cutter(average: int) -> Any:
    from pyfastcdc import FastCDC

    return FastCDC(avg_size=max(_FLOOR, average))


def largest(average: int) -> int:
    """The biggest chunk the cutter makes (FastCDC's default ``max_size``)."""
    return 4 * max(_FLOOR, average)


class Cutter:
    """Push-style FastCDC: ``feed`` gives the chunks that are final, ``end`` the rest.

    The cut points depend only on the bytes from a chunk's start, so cutting a window
    and holding its last chunk back until more data comes gives the same chunks as
    cutting the whole stream at once, with a window of memory."""

    def __init__(self, average: int) -> None:
        self._cdc = cutter(average)
        self._window = max(_WINDOW, 2 * largest(average))
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[bytes]:
        self._buf += data
        if len(self._buf) < self._window:
            return
        whole = bytes(self._buf)
        last = 0
        held: Any = None
        for chunk in self._cdc.cut_buf(whole):
            if held is not None:
                yield bytes(held.data)
            held, last = chunk, chunk.offset
        del self._buf[:last]

    def end(self) -> Iterator[bytes]:
        if self._buf:
            for chunk in self._cdc.cut_buf(bytes(self._buf)):
                yield bytes(chunk.data)
            self._buf.clear()


class Damaged(ValueError):
    """A stored chunk that is not what its name says; the message says how."""


class Codec:
    """Name, pack and unpack chunks under one ``encryption_key`` (or none)."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self._aead: Any = None
        if keys.enabled:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(keys.aead)

    def name(self, plain: bytes) -> str:
        if self.keys.enabled:
            return hmac.new(self.keys.chunk_id, plain, "sha256").hexdigest()
        return hashlib.sha256(plain).hexdigest()

    def pack(self, name: str, plain: bytes) -> bytes:
        import zstandard

        packed: bytes = zstandard.ZstdCompressor(level=_LEVEL).compress(plain)
        if self._aead is None:
            return packed
        nonce = os.urandom(_NONCE)
        # The name is the associated data: a chunk moved under another name fails.
        sealed: bytes = self._aead.encrypt(nonce, packed, f"chunk:{name}".encode())
        return nonce + sealed

    def unpack(self, name: str, stored: bytes, size: int) -> bytes:
        """The plain chunk, checked against its name and size; ``Damaged`` if not."""
        import zstandard

        if self._aead is not None:
            from cryptography.exceptions import InvalidTag

            try:
                stored = self._aead.decrypt(
                    stored[:_NONCE], stored[_NONCE:], f"chunk:{name}".encode()
                )
            except InvalidTag:
                raise Damaged("fails authentication") from None
        try:
            # The frame states its size; a lying one must not make us allocate it.
            if zstandard.frame_content_size(stored) != size:
                raise Damaged("does not match its checksum")
            plain: bytes = zstandard.ZstdDecompressor().decompress(stored, max_output_size=size)
        except zstandard.ZstdError:
            raise Damaged("does not match its checksum") from None
        if len(plain) != size or not hmac.compare_digest(self.name(plain), name):
            raise Damaged("does not match its checksum")
        return plain
