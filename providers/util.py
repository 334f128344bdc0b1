"""Helpers the providers and the engine share; no SDK imports.

They live here, under ``providers/``, because the arrows point ``failover -> providers``:
the engine, the state store and the renderer may import this module, a provider may not
import ``failover``.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import shlex
import socket
import threading
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from providers.base import HostSpec

# The placeholders a `run` command may use; the values differ by where the command runs.
PLACEHOLDER_NAMES = ("port", "address", "host_id", "service", "generation", "python")
PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDER_NAMES) + r")\}")
# Anything else shaped like one (`{prot}`), except shell `${VAR}`: a typo that would
# otherwise reach the host as text (issue 11).
_LIKE_PLACEHOLDER = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Environment variable (or config key) names that carry credentials. One rule for what
# is redacted, what `${ENV}` registers as a secret and what a local host does not inherit.
_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|AUTH|TSIG", re.I)


def is_secret_name(name: str) -> bool:
    """True when ``name`` looks like it holds a credential (``AWS_SECRET_ACCESS_KEY``)."""
    return bool(_SECRET_NAME.search(name))


def fill_placeholders(command: str, values: Mapping[str, str]) -> str:
    """``{port}``, ``{address}``... in ``command`` replaced from ``values``, which must
    have an entry for each placeholder name; other braces are left as they are."""
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], command)


def run_script(spec: HostSpec, values: Mapping[str, str], workdir: str) -> str:
    """The script a host runs: setup, restore, then ``exec`` the service, in ``workdir``.

    Every configured command is one line of ``/bin/sh`` under ``set -e``, so a failing
    setup stops the host before it serves. Each phase is written to ``../phase`` (beside
    ``workdir``) first: that file is how a provider tells a slow restore from a hang.
    Local and ssh hosts run this same script, so a service behaves alike on both.
    """

    def fill(command: str) -> str:
        return fill_placeholders(command, values)

    lines = ["#!/bin/sh", "set -e", f"cd {shlex.quote(workdir)}"]
    lines.append("echo setup > ../phase")
    lines.extend(fill(c) for c in spec.run.setup)
    lines.append("echo restore > ../phase")
    lines.extend(fill(c) for c in spec.run.restore)
    lines.append("echo serving > ../phase")
    # Through `/bin/sh -c`, as the cloud unit's ExecStart runs it: `cd /srv && exec ./x`
    # must behave the same in a local drill as on the cloud host (issue 11).
    lines.append(f"exec /bin/sh -c {shlex.quote(fill(spec.run.command))}")
    return "\n".join(lines) + "\n"


def unknown_placeholders(command: str) -> list[str]:
    """The ``{name}`` in ``command`` that are not placeholders, each once, in order."""
    found = [m.group(0) for m in _LIKE_PLACEHOLDER.finditer(command)]
    unknown = [f for f in found if f[1:-1] not in PLACEHOLDER_NAMES]
    return list(dict.fromkeys(unknown))


def image_placeholders(spec: HostSpec) -> dict[str, str]:
    """Placeholder values for a host booted from an image (cloud-init, a startup
    script): its address is only known on the host itself, so it listens on all."""
    return {
        "port": str(spec.port),
        "address": "0.0.0.0",
        "host_id": spec.name,
        "service": spec.service,
        "generation": str(spec.generation),
        "python": "python3",
    }


def pid_alive(pid: object) -> bool:
    """True while process ``pid`` exists and is not a zombie.

    A process of another user (PermissionError) counts as alive: it holds what it holds.
    None, 0, negatives and anything that is not a pid count as dead; ``kill(0)`` would
    otherwise ask about our own process group.
    """
    if isinstance(pid, bool) or not isinstance(pid, int | str):
        return False
    try:
        number = int(pid)
    except ValueError:
        return False
    if number <= 0:
        return False
    try:
        os.kill(number, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0), but it holds nothing any more.
    try:
        with open(f"/proc/{number}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def answers(address: str, port: int, timeout: float = 1.0) -> bool:
    """Something accepts TCP connections on ``address:port``, as seen from here."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_loopback_http(endpoint: str | None) -> bool:
    """True for ``http://127.x.y.z:N``, ``http://localhost:N`` and ``http://[::1]:N``: a
    local double, never a cloud."""
    if not endpoint:
        return False
    parts = urlsplit(endpoint)
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- private files

# The state directory holds `run.env` values (in run.sh, user-data, env.json, the log and
# the journal): only its owner may read it, whatever the umask (issue 11).
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> None:
    """``path`` and its missing parents, made 0700; an existing folder is left as it is."""
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue
        os.chmod(folder, PRIVATE_DIR)  # mkdir's mode is cut by the umask; chmod's is not


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_APPEND) -> int:
    """A descriptor of ``path``, created 0600, or made 0600 if it exists and is ours (a
    file of another user is theirs to set)."""
    fd = os.open(path, flags | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, PRIVATE_FILE)
    except OSError:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (made private if missing) for a
    read-modify-write of the files it guards. It excludes other processes and other
    threads of this one alike: every holder opens the file itself, and flock locks
    belong to the open file, not to the process."""
    private_dir(path.parent)
    with open(open_private(path), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_private(path: Path, data: str | bytes, *, durable: bool = False) -> None:
    """Replace ``path`` atomically with ``data``, readable by its owner only. ``durable``:
    on disk (file and folder entry) before returning, to survive a crash or power cut."""
    # Per thread as well as per process: two threads writing one file must not share
    # (and truncate) one temporary file.
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        try:
            view = memoryview(data.encode() if isinstance(data, str) else data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:  # a full disk leaves no half-written temporary behind
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
