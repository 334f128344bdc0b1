"""Keep credentials out of everything the toolkit shows or stores.

Values that come from secret-looking environment variables (through ``${ENV}`` in the
config, or the cloud SDKs' own variables) are registered here; every line the CLI
prints, every log line and every journal entry passes through :func:`redact`.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

from providers.util import is_secret_name

_SECRETS: set[str] = set()
_MIN_LEN = 4  # shorter values would redact ordinary words and numbers


def register_secret(value: str) -> None:
    if value and len(value) >= _MIN_LEN:
        _SECRETS.add(value)


def url_secrets(url: str) -> list[str]:
    """What of ``url`` must never be shown: the password of its ``user:password@``,
    as written and percent-decoded."""
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        return []
    return [password, urllib.parse.unquote(password)] if password else []


def register_environment() -> None:
    """Register the values of well-known credential variables of this process."""
    for name, value in os.environ.items():
        if is_secret_name(name):
            register_secret(value)


def redact_doc(doc: Any) -> Any:
    """``doc`` (dicts, lists, strings, numbers) with every secret in its strings, keys
    included, replaced: done before ``json.dumps``, which would escape a secret holding
    ``"``, ``\\`` or non-ASCII into a form :func:`redact` no longer finds (issue 11)."""
    if not _SECRETS:
        return doc
    if isinstance(doc, str):
        return redact(doc)
    if isinstance(doc, dict):
        return {redact_doc(k): redact_doc(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [redact_doc(v) for v in doc]
    return doc


def redact(text: str) -> str:
    if not _SECRETS or not text:
        return text
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text
