"""SSH plumbing for ``providers/ssh.py``: machine endpoints, pinned host keys, one event
loop thread holding a connection per machine, and the sh scripts the machines run.

asyncssh is imported inside the functions that talk to a machine, never at module
level, so that loading a config that names an ssh provider costs nothing.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import threading
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import BinaryIO
from typing import TypeVar

from providers.base import AccountBlocked
from providers.base import ProviderError
from providers.base import TransientError

T = TypeVar("T")

_ENDPOINT = re.compile(
    r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]\s]+\]|[^:@\s\[\]]+)(?::(?P<port>\d+))?$"
)


class HostKeyMismatch(ProviderError):
    """The machine offered a host key the pin does not accept: nothing was sent to it."""

    kind = "host_key"


@dataclass(frozen=True)
class Endpoint:
    user: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"


def parse_endpoint(text: str | None, address: str) -> Endpoint:
    """``deploy@203.0.113.10:22`` -> Endpoint; the defaults are root, the address, 22."""
    match = _ENDPOINT.match((text or address).strip())
    if not match:
        raise ValueError(f"{text!r} is not USER@HOST[:PORT]")
    port = int(match.group("port") or 22)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    host = match.group("host").strip("[]")
    return Endpoint(match.group("user") or "root", host, port)


@dataclass(frozen=True)
class Machine:
    """One machine of an ssh provider, as the provider uses it."""

    name: str
    address: str
    endpoint: Endpoint
    host_key: str | None
    known_hosts: str | None
    dir: str

    def label(self) -> str:
        """How errors name the machine: where it serves and how it is reached."""
        return f"machine {self.name} ({self.address}, ssh {self.endpoint})"

    def service_dir(self, service: str) -> str:
        """The service's folder on the machine as a sh word (``~`` is the login's home)."""
        return f"{shell_path(self.dir)}/{shlex.quote(service)}"


def shell_path(path: str) -> str:
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


# --------------------------------------------------------------------------- host keys


def known_hosts_arg(machine: Machine) -> Any:
    """What asyncssh checks the offered host key against; never None (that would trust
    any key, and a first connection must never be taken on trust)."""
    import asyncssh

    try:
        if machine.host_key:
            # One pinned key (or CA) for this machine alone: the pattern is irrelevant.
            line = machine.host_key.strip()
            key = line.split(None, 1)[1] if line.startswith("@cert-authority") else line
            asyncssh.import_public_key(key)  # a broken pin would otherwise just match nothing
            line = f"@cert-authority * {key}" if key != line else f"* {line}"
            return asyncssh.import_known_hosts(line + "\n")
        assert machine.known_hosts is not None
        return asyncssh.read_known_hosts(str(Path(machine.known_hosts).expanduser()))
    except (OSError, ValueError, asyncssh.Error) as exc:
        what = "host_key" if machine.host_key else f"known_hosts {machine.known_hosts}"
        raise ProviderError(f"{machine.label()}: {what} is unusable: {exc}") from None


def pinned_fingerprints(machine: Machine) -> list[str]:
    """The fingerprints the pin accepts for this machine (CA keys marked as such)."""
    try:
        known = known_hosts_arg(machine)
        e = machine.endpoint
        trusted, cas, *_ = known.match(e.host, e.host, e.port)
    except Exception as exc:  # only for a message: a broken pin is reported elsewhere
        return [f"(unreadable pin: {exc})"]
    out = [k.get_fingerprint("sha256") for k in trusted]
    out += [f"CA {k.get_fingerprint('sha256')}" for k in cas]
    return out or ["(no entry for this machine)"]


def update_hint(machine: Machine) -> str:
    e = machine.endpoint
    fetch = f"ssh-keyscan -p {e.port} {e.host}"
    if machine.host_key:
        return (
            "if the machine's key really changed, check the new fingerprint out of band "
            f"(its console, `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` there), then "
            f"set host_key to the line `{fetch}` prints"
        )
    target = f"[{e.host}]:{e.port}" if e.port != 22 else e.host
    return (
        "if the machine's key really changed, check the new fingerprint out of band, then "
        f"`ssh-keygen -R '{target}' -f {machine.known_hosts}` and add the line `{fetch}` "
        f"prints to {machine.known_hosts}"
    )


# --------------------------------------------------------------------------- errors


def classify(exc: BaseException, machine: Machine, provider: str) -> ProviderError:
    """An asyncssh/OS error as the shared vocabulary, naming the machine."""
    import asyncssh

    where = machine.label()
    if isinstance(exc, ProviderError):
        exc.provider = exc.provider or provider
        return exc
    if isinstance(exc, asyncssh.PermissionDenied):
        return AccountBlocked(
            f"{where}: login refused ({exc.reason})",
            provider=provider,
            code="PermissionDenied",
            hint="is the key in ~/.ssh/authorized_keys of that user on the machine?",
        )
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | asyncssh.TimeoutError):
        return TransientError(f"{where}: no answer in time", provider=provider, code="Timeout")
    if isinstance(exc, OSError):
        return TransientError(
            f"{where}: cannot connect ({exc.strerror or exc})", provider=provider, code="Connect"
        )
    if isinstance(exc, asyncssh.DisconnectError | asyncssh.ChannelOpenError):
        return TransientError(
            f"{where}: the connection ended ({exc.reason})", provider=provider, code="Disconnect"
        )
    return ProviderError(f"{where}: {type(exc).__name__}: {exc}", provider=provider)


# --------------------------------------------------------------------------- connections


class Connections:
    """An event loop on its own thread, and at most one live connection per machine.

    The provider's methods are synchronous and may be called from several threads; every
    coroutine runs on this one loop, so connections are shared and many machines can be
    asked at once (``gather``)."""

    def __init__(self, provider: str, options: Callable[[Machine], dict[str, Any]]) -> None:
        self.provider = provider
        self._options = options
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self._conns: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._guard:
            if self._loop is None or not self._loop.is_running():
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name=f"ssh-{self.provider}", daemon=True
                )
                self._thread.start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    async def connect(self, machine: Machine) -> Any:
        """A verified, logged-in connection to ``machine`` (reused while it lives)."""
        import asyncssh

        lock = self._locks.setdefault(machine.address, asyncio.Lock())
        async with lock:
            conn = self._conns.get(machine.address)
            if conn is not None and not conn.is_closed():
                return conn
            e = machine.endpoint
            try:
                conn = await asyncssh.connect(
                    e.host, e.port, username=e.user, **self._options(machine)
                )
            except asyncssh.HostKeyNotVerifiable as exc:
                raise await self._mismatch(machine, str(exc)) from None
            except asyncssh.KeyExchangeFailed as exc:
                # A pin of another key type than the machine offers ends the key exchange
                # before the host key is even compared: the same refusal.
                raise await self._mismatch(machine, str(exc)) from None
            self._conns[machine.address] = conn
            return conn

    async def _mismatch(self, machine: Machine, why: str) -> HostKeyMismatch:
        import asyncssh

        e = machine.endpoint
        try:
            # Key exchange only, no login: asks the machine which key it offers.
            key = await asyncssh.get_server_host_key(e.host, e.port, config=None)
            offered = key.get_fingerprint("sha256") if key else "(none)"
        except (OSError, asyncssh.Error) as exc:
            offered = f"(could not fetch it: {exc})"
        pinned = ", ".join(pinned_fingerprints(machine))
        return HostKeyMismatch(
            f"{machine.label()}: host key refused, nothing was sent: the machine offers "
            f"{offered}, the pin accepts {pinned} ({why})",
            provider=self.provider,
            code="HostKeyMismatch",
            hint=update_hint(machine),
        )

    async def call(self, machine: Machine, use: Callable[[Any], Awaitable[T]], timeout: float) -> T:
        """``use(connection)`` within ``timeout`` for this machine; a cached connection that
        died meanwhile is replaced once. Errors come back in the shared vocabulary."""
        import asyncssh

        async def attempt() -> T:
            for second in (False, True):
                conn = await self.connect(machine)
                try:
                    return await use(conn)
                except (asyncssh.ChannelOpenError, asyncssh.ConnectionLost, BrokenPipeError):
                    self._drop(machine)
                    if second:
                        raise
            raise AssertionError("unreachable")

        try:
            return await asyncio.wait_for(attempt(), timeout)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
            if not isinstance(exc, HostKeyMismatch | AccountBlocked):
                self._drop(machine)
            raise classify(exc, machine, self.provider) from None

    async def sh(self, machine: Machine, script: str, timeout: float) -> tuple[int, str, str]:
        """Run ``script`` with ``/bin/sh`` on the machine (whatever the login shell is).

        The script travels on stdin, not in the command line: it may hold ``run.env``
        values, which other users of the machine would see in ``ps``."""

        async def use(conn: Any) -> tuple[int, str, str]:
            done = await conn.run("/bin/sh -s", input=script, check=False)
            status = done.exit_status if done.exit_status is not None else 255
            return int(status), str(done.stdout or ""), str(done.stderr or "")

        return await self.call(machine, use, timeout)

    def _drop(self, machine: Machine) -> None:
        conn = self._conns.pop(machine.address, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._guard:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return

        async def shut() -> None:
            for conn in list(self._conns.values()):
                conn.close()
            self._conns.clear()
            self._locks.clear()

        if loop.is_running():
            asyncio.run_coroutine_threadsafe(shut(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        loop.close()


async def exec_stream(
    conn: Any, script: str, stdin: BinaryIO | None, stdout: BinaryIO | None
) -> tuple[int, str]:
    """Run ``script`` with ``/bin/sh``, copying ``stdin`` to it and its output to ``stdout``
    as they come (a data dump may be larger than memory); returns (status, stderr)."""
    proc = await conn.create_process("/bin/sh -c " + shlex.quote(script), encoding=None)
    errors = bytearray()

    async def feed() -> None:
        if stdin is not None:
            while chunk := await asyncio.to_thread(stdin.read, 1 << 16):
                proc.stdin.write(chunk)
                await proc.stdin.drain()
        proc.stdin.write_eof()

    async def out() -> None:
        while chunk := await proc.stdout.read(1 << 16):
            if stdout is not None:
                await asyncio.to_thread(stdout.write, chunk)

    async def err() -> None:
        while chunk := await proc.stderr.read(1 << 16):
            errors.extend(chunk[: max(0, 65536 - len(errors))])

    try:
        await asyncio.gather(feed(), out(), err())
        await proc.wait()
    finally:
        proc.close()
    status = proc.returncode
    return (255 if status is None or status < 0 else int(status)), errors.decode(errors="replace")


# --------------------------------------------------------------------------- scripts

# A host's folder on a machine (``~/.failover/<service>/``): host.json (what list_hosts
# rebuilds from), id, env (run.env), run.sh (the local provider's script), supervise.sh,
# root/ (the working folder), and what the supervisor writes: pid, phase, log, exit.

SUPERVISE = """\
#!/bin/sh
# Detached from the SSH session (its own session, or a systemd unit): writes its pid,
# runs the host's script and records how it ended, as the local provider does.
cd "$(dirname "$0")" || exit 1
# What the supervisor writes is for the service's owner only (issue 21); the service
# itself runs with the umask it was given.
given=$(umask)
umask 077
echo $$ > pid.new && mv pid.new pid
touch log phase && chmod 600 log phase
. ./env
cd root || exit 1
umask "$given"
/bin/sh ../run.sh >> ../log 2>&1 < /dev/null
status=$?
umask 077
echo $status > ../exit
"""

_ALIVE = """\
alive() {{
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
  # A zombie still answers kill -0, but it serves nothing.
  if [ -r "/proc/$1/stat" ] && grep -q ') Z' "/proc/$1/stat"; then return 1; fi
  return 0
}}
"""

_STATUS = """\
cd {dir} 2>/dev/null && [ -f host.json ] || {{ echo missing=1; exit 0; }}
echo "meta=$(cat host.json)"
echo "phase=$(cat phase 2>/dev/null)"
echo "exit=$(cat exit 2>/dev/null)"
[ -f stopped ] && echo stopped=1
pid=$(cat pid 2>/dev/null)
if alive "$pid"; then echo alive=1; fi
echo "pid=$pid"
"""
STATUS = _ALIVE + _STATUS
# Before each folder's status in a batch (one script, one round trip, for every host a
# round asks about on one machine: issue 28).
_MARK = "@@failover-status@@"


def status_script(dirs: list[str]) -> str:
    """One script reporting :data:`STATUS` for each folder in ``dirs``, in order, each
    in its own subshell (its ``cd`` and ``exit`` stay there) after a marker line."""
    parts = [_ALIVE.format()]
    for i, directory in enumerate(dirs):
        parts.append(f"echo '{_MARK} {i}'")
        parts.append("(\n" + _STATUS.format(dir=directory) + ")")
    return "\n".join(parts) + "\n"


def parse_statuses(text: str, count: int) -> list[dict[str, str]]:
    """What :func:`status_script` printed, one status per folder, in order."""
    chunks: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith(_MARK):
            chunks.append([])
        elif chunks:
            chunks[-1].append(line)
    if len(chunks) != count:
        raise ValueError(f"expected {count} statuses, got {len(chunks)}")
    return [parse_status("\n".join(c)) for c in chunks]


START = """\
cd {dir} || exit 10
rm -f pid exit phase stopped supervisor
touch log && chmod 600 log
pref={pref}
unit={unit}
mode=pidfile
if [ "$pref" != pidfile ] && [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1
then
  if [ "$(id -u)" = 0 ]; then
    systemd-run --quiet --collect --unit="$unit" /bin/sh "$PWD/supervise.sh" >/dev/null 2>>log \\
      && mode=systemd
  else
    systemd-run --user --quiet --collect --unit="$unit" /bin/sh "$PWD/supervise.sh" \\
      >/dev/null 2>>log && mode=systemd-user
  fi
fi
if [ "$pref" = systemd ] && [ "$mode" = pidfile ]; then
  echo "supervisor: systemd was asked for but systemd-run failed or is missing" >&2; exit 11
fi
if [ "$mode" = pidfile ]; then
  if command -v setsid >/dev/null 2>&1; then
    setsid /bin/sh ./supervise.sh >/dev/null 2>&1 </dev/null &
  else
    nohup /bin/sh ./supervise.sh >/dev/null 2>&1 </dev/null &
  fi
fi
echo "$mode" > supervisor
i=0
while [ ! -s pid ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
[ -s pid ] || {{ echo "the supervisor did not start; see $PWD/log" >&2; exit 12; }}
echo "$mode"
"""

# Stops (and with remove=1 deletes) the host only when the folder is still that host's:
# a newer host of the service on the same machine is never touched by an old id.
STOP = (
    _ALIVE
    + """\
cd {dir} 2>/dev/null || {{ echo gone; exit 0; }}
[ "$(cat id 2>/dev/null)" = {id} ] || {{ echo notours; exit 0; }}
touch stopped
unit={unit}
case "$(cat supervisor 2>/dev/null)" in
  systemd) systemctl stop "$unit" >/dev/null 2>&1 ;;
  systemd-user) systemctl --user stop "$unit" >/dev/null 2>&1 ;;
esac
pid=$(cat pid 2>/dev/null)
if alive "$pid"; then
  kill -s TERM -- "-$pid" 2>/dev/null || kill -s TERM "$pid" 2>/dev/null
  kill -s CONT -- "-$pid" 2>/dev/null
  i=0
  while alive "$pid" && [ $i -lt 60 ]; do sleep 0.05; i=$((i+1)); done
  kill -s KILL -- "-$pid" 2>/dev/null
fi
if [ {remove} = 1 ]; then cd / && rm -rf {dir}; echo removed; else echo stopped; fi
"""
)


def upload_script(directory: str, files: dict[str, str], replace: bool) -> str:
    """One sh script that writes ``files`` into ``directory`` (``host.json`` last, so a
    half-written folder is never taken for a host); ``replace`` clears an old host."""
    delimiter = "FAILOVER_EOF_7f3c"
    lines = ["umask 077"]
    if replace:
        lines.append(f"rm -rf {directory}")
    lines += [f"mkdir -p {directory}/root && cd {directory} || exit 10"]
    for name in sorted(files, key=lambda n: n == "host.json"):
        body = files[name] if files[name].endswith("\n") else files[name] + "\n"
        if delimiter in body:
            raise ValueError(f"{name} contains the line {delimiter}")
        lines.append(f"cat > {name}.new <<'{delimiter}'\n{body}{delimiter}")
        lines.append(f"mv {name}.new {name}")
    return "\n".join(lines) + "\n"


def env_file(env: dict[str, str]) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))


def parse_status(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key not in out:
            out[key] = value
    return out
