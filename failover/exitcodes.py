"""The exit codes of the ``failover`` command (CONTRACT.md, "Exit codes").

Kept apart from the renderers and the engine, and free of imports, so that ``cli.py``
can use them at import time without slowing down ``failover --help``.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Every command but ``check``."""

    SUCCESS = 0
    FAILED = 1
    USAGE = 2
    INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

    @classmethod
    def of(cls, ok: bool) -> ExitCode:
        """SUCCESS when the operation did what was asked, else FAILED."""
        return cls.SUCCESS if ok else cls.FAILED


class CheckCode(enum.IntEnum):
    """``check`` follows the monitoring-plugin convention (Nagios, Icinga, Sensu)."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3
