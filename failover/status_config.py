"""The ``status_page:`` section: where the status page is published (CONTRACT section 16)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from typing import Any

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator

if TYPE_CHECKING:
    from failover.config import Config

_PREFIX = re.compile(r"([A-Za-z0-9._-]+/)*")


class StatusPageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(
        default="Service status", min_length=1, max_length=200, description="the page's heading"
    )
    stores: list[str] = Field(
        default_factory=list,
        description="stores (from `stores`) the page is published to; serve each as a static site",
    )
    prefix: str = Field(
        default="status/", description="index.html and status.json are written under it"
    )

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.lstrip("/")
        if value and not value.endswith("/"):
            value += "/"
        if not _PREFIX.fullmatch(value) or any(p in (".", "..") for p in value.split("/")):
            raise ValueError("a folder like `status/`: letters, digits, '.', '_', '-' and '/'")
        return value


def status_page_problems(config: Config) -> list[tuple[tuple[Any, ...], str]]:
    """The stores ``status_page`` lists exist, each once."""
    page = config.status_page
    if page is None:
        return []
    known = {s.name for s in config.stores}
    out: list[tuple[tuple[Any, ...], str]] = []
    for i, name in enumerate(page.stores):
        if name not in known:
            out.append((("status_page", "stores", i), f"no store named {name!r} in `stores`"))
        elif page.stores.index(name) != i:
            out.append((("status_page", "stores", i), f"lists {name!r} twice"))
    return out
