"""``data.engine: pgbackrest``'s settings: where PostgreSQL lives on a host and how
often pgBackRest backs it up (CONTRACT section 14)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

# pgBackRest's own limit: repo1..repo4.
MAX_REPOS = 4
# The store types pgBackRest has a repository type for (and what it calls them).
REPO_TYPES = {"dir": "posix", "s3": "s3", "gcs": "gcs", "azureblob": "azure"}


class PostgresSettings(BaseModel):
    """``services.<name>.data.postgres``."""

    model_config = ConfigDict(extra="forbid")

    data_dir: str = Field(
        min_length=1,
        description="the cluster's directory (relative: to the host's working directory); "
        "{host_id} and {service} are filled in",
    )
    bin_dir: str = Field(default="/usr/lib/postgresql/15/bin", min_length=1)
    user: str = Field(
        default="postgres",
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description="the OS user that runs the database (PostgreSQL refuses root)",
    )
    initdb: str = Field(default="", description="options of a first initdb")
    hba: list[str] = Field(default_factory=list, description="lines added to pg_hba.conf")


def repo_problems(
    loc: tuple[Any, ...], chosen: list[str], stores: Mapping[str, Any]
) -> list[tuple[tuple[Any, ...], str]]:
    """``data.stores`` as pgBackRest repositories: at most four, of types it has, and a
    ``dir`` store's path and a ``ca_file`` absolute (the host and the watcher must mean
    one file)."""
    out: list[tuple[tuple[Any, ...], str]] = []
    if len(chosen) > MAX_REPOS:
        out.append(
            (
                (*loc, "stores"),
                f"engine pgbackrest takes at most {MAX_REPOS} stores (one repository each), "
                f"not {len(chosen)}",
            )
        )
    for i, name in enumerate(chosen):
        kind = getattr(stores.get(name), "type", None)
        path = str(getattr(stores.get(name), "path", "/"))
        if kind == "dir" and not path.startswith("/"):
            out.append(
                ((*loc, "stores", i), f"store {name}: engine pgbackrest needs an absolute path")
            )
        ca_file = getattr(stores.get(name), "ca_file", None)
        if ca_file and not ca_file.startswith("/"):
            out.append(
                ((*loc, "stores", i), f"store {name}: engine pgbackrest needs an absolute ca_file")
            )
        if kind is not None and kind not in REPO_TYPES:
            out.append(
                ((*loc, "stores", i), f"store {name} ({kind}) cannot be a pgBackRest repository")
            )
    return out
