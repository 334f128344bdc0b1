"""``failover systemd``: unit files for the watcher and for cron-style checks.

``failover-watch.service`` runs ``failover watch`` for good (Restart=always) as a
dedicated user, with its state in ``/var/lib/failover`` (StateDirectory=) and the usual
hardening; ``failover-check.timer`` runs ``failover check`` every interval instead, for
those who prefer a one-shot per minute. Credentials go in an EnvironmentFile (mode 0600),
never in the unit.
"""

from __future__ import annotations

import os
import re
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
    # Folders outside the state directory the service writes: `dir` stores, a state.dir
    # of the config outside /var/lib. ProtectSystem=strict leaves them read-only else.
    writable: tuple[str, ...] = ()

    @property
    def state_dir(self) -> str:
        return f"/var/lib/{self.state}"

    def _service(self) -> str:
        # "-": a store folder missing at start (an NFS mount late) fails that store's
        # writes, not the whole watcher (status 226/NAMESPACE).
        paths = " ".join(unit_quote("-" + p, exec_line=False) for p in self.writable)
        return (
            f"User={self.user}\n"
            f"Group={self.user}\n"
            f"StateDirectory={self.state}\n"
            "StateDirectoryMode=0750\n"
            f"WorkingDirectory={self.state_dir}\n"
            f"EnvironmentFile=-{self.env_file}\n"
            f"Environment=FAILOVER_STATE_DIR={self.state_dir}\n"
            + (f"ReadWritePaths={paths}\n" if paths else "")
            + _HARDENING
        )

    def _exec(self, command: str, *args: str) -> str:
        words = [self.executable, command, "--config", self.config, *args]
        return "ExecStart=" + " ".join(unit_quote(w) for w in words) + "\n"

    def watch_service(self) -> str:
        metrics = ("--metrics-port", str(self.metrics_port)) if self.metrics_port else ()
        return (
            "[Unit]\n"
            "Description=failover watch: keep the services of the config reachable\n"
            "Wants=network-online.target\n"
            "After=network-online.target\n"
            "\n[Service]\n"
            "Type=simple\n" + self._exec("watch", *metrics) + "Restart=always\n"
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
            + self._exec("check")
            # 1 is WARNING (a move happened, or a provider refuses us): worth a line in
            # the journal, not a failed unit; 2 CRITICAL and 3 UNKNOWN fail it.
            + "SuccessExitStatus=1\n"
            + self._service()
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


# --------------------------------------------------------------------------- checks

# systemd.time(7): a span is numbers with units, "1min", "30s", "1h 30min", "2h30m".
_SPAN_UNITS = (
    "usec|us|msec|ms|seconds|second|sec|s|minutes|minute|min|m|hours|hour|hr|h|"
    "days|day|d|weeks|week|w|months|month|M|years|year|y"
)
_SPAN = re.compile(rf"(\s*\d+(\.\d+)?\s*({_SPAN_UNITS})?)+\s*")
# useradd's rule (and systemd's User= check): what a `--user` may be.
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,30}")


class BadOption(ValueError):
    """An option that would write an invalid unit: a usage error (exit 2)."""


def check_every(every: str) -> str:
    if not _SPAN.fullmatch(every) or not any(c in "123456789" for c in every):
        raise BadOption(
            f"--every {every!r}: not a time span systemd reads (e.g. 30s, 1min, 5min, 1h)"
        )
    return every.strip()


def check_user(user: str) -> str:
    if not _USER.fullmatch(user):
        raise BadOption(
            f"--user {user!r}: not a user name (lowercase letters, digits, '_' and '-', "
            "starting with a letter or '_', at most 31)"
        )
    return user


def unit_quote(word: str, *, exec_line: bool = True) -> str:
    """``word`` as one argument of a unit file line: ``%`` (specifiers) and, on ExecStart,
    ``$`` (variables) escaped; quoted when it holds blanks or quotes."""
    if any(c in word for c in "\n\r\0"):
        raise BadOption(f"{word!r}: a line break has no place in a unit file")
    word = word.replace("%", "%%")
    if exec_line:
        word = word.replace("$", "$$")
    if any(c.isspace() or c in "\"'\\;" for c in word):
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def placement_warnings(exe: str) -> list[str]:
    """ExecStart under a folder the hardening hides from the service never starts."""
    hidden = {"/home": "ProtectHome=yes", "/root": "ProtectHome=yes", "/tmp": "PrivateTmp=yes"}
    for top, why in hidden.items():
        if exe == top or exe.startswith(top + "/"):
            return [
                f"ExecStart={exe} lives under {top}, which {why} hides from the service: "
                "it would fail with status 203/EXEC. Install failover outside /home, /root "
                "and /tmp (e.g. `python3 -m venv /opt/failover && /opt/failover/bin/pip "
                "install ...`) and run `failover systemd` from there"
            ]
    return []


def from_config(path: Path, state_dir: str) -> tuple[tuple[str, ...], list[str]]:
    """The folders the units must leave writable for this config (its ``dir`` stores),
    and warnings. Read as written,
    without ``${ENV}`` (the credentials are in the environment file, not here)."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        why = (
            (exc.strerror or str(exc)).lower()
            if isinstance(exc, OSError)
            else "not valid YAML"
            if isinstance(exc, yaml.YAMLError)
            else "not UTF-8 text"
        )
        return (), [
            f"cannot read {path} ({why}): the units get no ReadWritePaths= for its dir "
            "stores; name the config with -c, on the machine that runs the watcher"
        ]
    doc = doc if isinstance(doc, dict) else {}
    paths, warnings = [], []
    for store in doc.get("stores") or []:
        if isinstance(store, dict) and store.get("type") == "dir" and store.get("path"):
            paths.append(str(store["path"]))
    state = doc.get("state") if isinstance(doc.get("state"), dict) else None
    if str((state or {}).get("dir") or "").rstrip("/") != state_dir:
        warnings.append(
            f"{path}: state.dir is not {state_dir}: interactive commands on this machine "
            f"(`failover status -c {path}`) would not see the watcher's state; add "
            f"`state: {{dir: {state_dir}}}` to the config (or export "
            f"FAILOVER_STATE_DIR={state_dir} before running them)"
        )
    for p in paths:
        if "${" in p or not p.startswith("/"):
            warnings.append(f"{p}: not an absolute path: no ReadWritePaths= for it")
        elif any(p == t or p.startswith(t + "/") for t in ("/home", "/root", "/tmp")):
            warnings.append(f"{p}: under /home, /root or /tmp, which the service cannot see")
    return tuple(p for p in paths if p.startswith("/") and "${" not in p), warnings


def for_config(
    exe: str, config: Path, *, user: str, every: str, metrics_port: int | None
) -> tuple[Units, list[str]]:
    """The units for ``config``, and what the operator should know; raises
    :class:`BadOption` for an option that would make a unit systemd rejects."""
    state_dir = Units(exe).state_dir
    writable, warnings = from_config(config, state_dir)
    made = Units(
        exe,
        config=str(config),
        user=check_user(user),
        every=check_every(every),
        metrics_port=metrics_port,
        writable=writable,
    )
    made.files()  # every path quoted once: a line break in one is refused here
    return made, placement_warnings(exe) + warnings


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
