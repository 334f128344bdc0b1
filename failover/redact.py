"""Keep credentials out of everything the toolkit shows or stores.

Values that come from secret-looking environment variables (through ``${ENV}`` in the
config, or the cloud SDKs' own variables) are registered here; every line the CLI
prints, every log line and every journal entry passes through :func:`redact`.
"""

from __future__ import annotations

import os
import re

_SECRETS: set[str] = set()
_ENV_SECRET = re.compile(
    r"(SECRET|TOKEN|PASSWORD|PASSWD|SESSION_KEY|PRIVATE_KEY|API_KEY|TSIG)", re.I
)
_MIN_LEN = 4  # shorter values would redact ordinary words and numbers


def register_secret(value: str) -> None:
    if value and len(value) >= _MIN_LEN:
        _SECRETS.add(value)


def register_environment() -> None:
    """Register the values of well-known credential variables of this process."""
    for name, value in os.environ.items():
        if _ENV_SECRET.search(name) or name in ("AWS_ACCESS_KEY_ID", "AZURE_CLIENT_SECRET"):
            register_secret(value)


def redact(text: str) -> str:
    if not _SECRETS or not text:
        return text
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text
