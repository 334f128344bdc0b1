"""``failover systemd``: unit files for the watcher and for cron-style checks.

``failover-watch.service`` runs ``failover watch`` for good (Restart=always) as a
dedicated user, with its state in ``/var/lib/failover`` (StateDirectory=) and the usual
hardening; ``failover-check.timer`` runs ``failover check`` every interval instead, for
those who prefer a one-shot per minute. Credentials go in an EnvironmentFile (mode 0600),
never in the unit.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

# ProtectSystem=strict makes the whole tree read-only but the StateDirectory; the rest
# is the list `systemd-analyze security` asks for first.
_HARDENING = """\
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
UMask=0077
"""


@dataclass(frozen=True)
class Units:
    executable: str
    config: str = "/etc/failover/failover.yaml"
    user: str = "failover"
    state: str = "failover"  # under /var/lib: StateDirectory=
    env_file: str = "/etc/failover/env"
    every: str = "1min"
    metrics_port: int | None = None

    @property
    def state_dir(self) -> str:
        return f"/var/lib/{self.state}"

    def _service(self) -> str:
        return (
            f"User={self.user}\n"
            f"Group={self.user}\n"
            f"StateDirectory={self.state}\n"
            "StateDirectoryMode=0750\n"
            f"WorkingDirectory={self.state_dir}\n"
            f"EnvironmentFile=-{self.env_file}\n"
            f"Environment=FAILOVER_STATE_DIR={self.state_dir}\n" + _HARDENING
        )

    def watch_service(self) -> str:
        metrics = f" --metrics-port {self.metrics_port}" if self.metrics_port else ""
        return (
            "[Unit]\n"
            "Description=failover watch: keep the services of the config reachable\n"
            "Wants=network-online.target\n"
            "After=network-online.target\n"
            "\n[Service]\n"
            "Type=simple\n"
            f"ExecStart={self.executable} watch --config {self.config}{metrics}\n"
            "Restart=always\n"
            "RestartSec=5s\n"
            # SIGTERM: the step in flight finishes and is journaled; give it time.
            "KillSignal=SIGTERM\n"
            "TimeoutStopSec=15min\n" + self._service() + "\n[Install]\n"
            "WantedBy=multi-user.target\n"
        )

    def check_service(self) -> str:
        return (
            "[Unit]\n"
            "Description=failover check: one probe round (and a failover when due)\n"
            "Wants=network-online.target\n"
            "After=network-online.target\n"
            "\n[Service]\n"
            "Type=oneshot\n"
            f"ExecStart={self.executable} check --config {self.config}\n"
            # 1 is WARNING (a move happened, or a provider refuses us): worth a line in
            # the journal, not a failed unit; 2 CRITICAL and 3 UNKNOWN fail it.
            "SuccessExitStatus=1\n" + self._service()
        )

    def check_timer(self) -> str:
        return (
            "[Unit]\n"
            "Description=failover check every interval\n"
            "\n[Timer]\n"
            "OnBootSec=30s\n"
            f"OnUnitActiveSec={self.every}\n"
            "AccuracySec=1s\n"
            "Unit=failover-check.service\n"
            "\n[Install]\n"
            "WantedBy=timers.target\n"
        )

    def files(self) -> dict[str, str]:
        return {
            "failover-watch.service": self.watch_service(),
            "failover-check.service": self.check_service(),
            "failover-check.timer": self.check_timer(),
        }


def executable() -> str:
    """The absolute path of this ``failover`` command (systemd wants one)."""
    found = shutil.which("failover")
    if found:
        return os.path.abspath(found)
    here = Path(sys.argv[0])
    if here.name == "failover" and here.exists():
        return str(here.resolve())
    return str(Path(sys.executable).parent / "failover")


def write(units: Units, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in units.files().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
