"""A real OpenSSH server for the ssh provider's tests, on a random loopback port.

``sshd`` (Debian's ``openssh-server``, installed by ``.ci/run``) runs in the foreground
from a temp folder with its own host key, an ``authorized_keys`` holding a generated
client key, its pid file and its log: no system sshd, no port 22, nothing outside the
folder. It lets in only the user running the tests. As root (CI) it needs the
privilege-separation folder ``/run/sshd`` that the package normally creates; as a normal
user it needs no privilege (sshd then lets in only that user, which is all we ask).

The fixture ``sshd`` is session-scoped (``pytest_plugins`` in ``conftest.py``); tests
that stop it must start it again (``Sshd.start``).
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import pytest

from tests.conftest import need_binary
from tests.servers import free_port
from tests.servers import stop_process

CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/host_ed25519
HostCertificate {dir}/host_ed25519-cert.pub
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers {user}
LogLevel VERBOSE
MaxStartups 100:30:200
MaxSessions 100
"""


def keygen(path: Path, comment: str) -> str:
    """A new ed25519 key pair at ``path``; returns the public key line."""
    keygen_bin = need_binary("ssh-keygen")
    path.unlink(missing_ok=True)
    subprocess.run(
        [keygen_bin, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class Sshd:
    dir: Path
    binary: str
    port: int = 0
    host_key: str = ""  # the public line, as host_key: pins it
    ca_key: str = ""  # the public line of the CA that signed the host key
    client_key: Path = field(default_factory=Path)
    stranger_key: Path = field(default_factory=Path)  # a key the server does not accept
    user: str = field(default_factory=getpass.getuser)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    def endpoint(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key}"

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        last = ""
        for _attempt in range(3):
            self.port = self.port or free_port()
            conf = self.dir / "sshd_config"
            conf.write_text(CONFIG.format(port=self.port, dir=self.dir, user=self.user))
            self.proc = subprocess.Popen(
                [self.binary, "-D", "-f", str(conf), "-E", str(self.log)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _banner(self.port):
                    return
                time.sleep(0.05)
            self.stop()
            last = self.log.read_text(errors="replace") if self.log.exists() else ""
            self.port = 0
        raise RuntimeError(f"sshd did not start; its log:\n{last[-3000:]}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)

    def logins(self) -> int:
        """How many logins sshd accepted so far (its log)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text.count("Accepted publickey")


def _banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def make_sshd(base: Path) -> Sshd:
    binary = need_binary("sshd", "/usr/sbin")
    need_binary("ssh-keygen")
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # sshd refuses to start as root without its privilege-separation folder.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    server = Sshd(dir=base, binary=binary)
    server.host_key = keygen(base / "host_ed25519", "test-host")
    # The host key also carries a certificate from a test CA, for @cert-authority pins.
    server.ca_key = keygen(base / "host_ca", "test-host-ca")
    subprocess.run(
        [
            *("ssh-keygen", "-q", "-s", str(base / "host_ca"), "-h", "-I", "test-host"),
            *("-n", "127.0.0.1", str(base / "host_ed25519.pub")),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    client = keygen(base / "client", "failover-test-client")
    keygen(base / "stranger", "not-authorized")
    (base / "authorized_keys").write_text(client + "\n")
    server.client_key = base / "client"
    server.stranger_key = base / "stranger"
    return server


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = make_sshd(tmp_path_factory.mktemp("sshd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def running_sshd(sshd: Sshd) -> Sshd:
    """The session's sshd, started again if an earlier test stopped it."""
    sshd.start()
    return sshd
