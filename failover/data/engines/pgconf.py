"""pgBackRest's configuration and the host's part of engine ``pgbackrest``, rendered
from the service's stores (each store one repository, in ``data.stores`` order).

The host's part is one ``/bin/sh`` line added to ``run.restore`` (so local, ssh and
image-booted hosts run the same thing, after ``run.setup`` and before the database
starts): it writes pgbackrest.conf beside the data directory, then restores the newest
backup from the first repository that gives one, with WAL replayed to the end of the
archive, or, when every repository answers that it holds none, runs initdb. A
repository that fails and none that gives a backup stops the host: data that may exist
is never replaced by an empty cluster.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Collection
from collections.abc import Sequence
from urllib.parse import urlsplit

from failover.data.engines.pgsettings import REPO_TYPES
from failover.data.settings import AzureBlobStoreSettings
from failover.data.settings import DataConfig
from failover.data.settings import GcsStoreSettings
from failover.data.settings import S3StoreSettings
from failover.data.settings import StoreBase

# Tokens the host's script replaces with absolute paths (a relative data_dir is the
# host's working directory's).
DATA, CONF = "@DATA@", "@CONF@"


def chosen(data: DataConfig, stores: Sequence[StoreBase]) -> list[StoreBase]:
    names = data.stores or [s.name for s in stores]
    return [next(s for s in stores if s.name == n) for n in names]


def _endpoint(n: int, url: str, kind: str) -> list[str]:
    parts = urlsplit(url)
    out = [f"repo{n}-{kind}-endpoint={parts.hostname}"]
    if parts.port:
        out.append(f"repo{n}-storage-port={parts.port}")
    return out


def repo_lines(n: int, store: StoreBase) -> list[str]:
    """One store as repository ``n``. Credentials stay out of the file: pgBackRest reads
    ``PGBACKREST_REPO<n>_S3_KEY``... from the environment (``run.env`` on the host)."""
    kind = REPO_TYPES[getattr(store, "type", "")]
    out = [f"repo{n}-type={kind}"]
    if kind == "posix":
        path = getattr(store, "path")  # noqa: B009 - DirStoreSettings
        out.append(f"repo{n}-path={path}")  # absolute: config validation
        return out
    assert isinstance(store, S3StoreSettings | GcsStoreSettings | AzureBlobStoreSettings)
    out.append(f"repo{n}-path=/{store.prefix.strip('/')}")
    if isinstance(store, S3StoreSettings):
        out += [
            f"repo{n}-s3-bucket={store.bucket}",
            f"repo{n}-s3-region={store.region or 'us-east-1'}",
        ]
        if store.endpoint:
            out += [*_endpoint(n, store.endpoint, "s3"), f"repo{n}-s3-uri-style=path"]
        else:
            out.append(f"repo{n}-s3-endpoint=s3.{store.region or 'us-east-1'}.amazonaws.com")
    elif isinstance(store, GcsStoreSettings):
        out += [f"repo{n}-gcs-bucket={store.bucket}", f"repo{n}-gcs-key-type=auto"]
        if store.endpoint:
            out += _endpoint(n, store.endpoint, "gcs")
    else:
        url, account = _azure_account(store)
        out += [f"repo{n}-azure-account={account}", f"repo{n}-azure-container={store.container}"]
        if not (urlsplit(url).hostname or "").endswith(".blob.core.windows.net"):
            out += [*_endpoint(n, url, "azure"), f"repo{n}-azure-uri-style=path"]
    ca_file = getattr(store, "ca_file", None)  # s3 and azureblob: a private authority
    if ca_file:
        out.append(f"repo{n}-storage-ca-file={ca_file}")
    return out


def connection_fields(connection_string: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)


def _azure_account(store: AzureBlobStoreSettings) -> tuple[str, str]:
    """The blob endpoint and the account name, from ``account_url`` or, without it, from
    the connection string (its ``BlobEndpoint`` and ``AccountName``)."""
    fields = connection_fields(store.connection_string or "")
    url = store.account_url or store.endpoint or fields.get("BlobEndpoint", "")
    host = urlsplit(url).hostname or ""
    account = fields.get("AccountName") or host.split(".")[0]
    return url, account


def render_conf(service: str, data: DataConfig, stores: Sequence[StoreBase], port: int) -> str:
    """pgbackrest.conf for ``service``'s host (``@DATA@``/``@CONF@`` left to fill)."""
    lines = [
        "[global]",
        "archive-async=y",
        f"spool-path={CONF}/spool",
        f"lock-path={CONF}/lock",
        f"log-path={CONF}/log",
        "log-level-console=info",
        "log-level-file=info",
        "start-fast=y",
        # Measured by bench/pgbackrest.py (README): zstd instead of gzip and two
        # processes restore faster than one and back up several times faster.
        "compress-type=zst",
        "process-max=2",
        # A dead repository must not stall the database: WAL beyond this is dropped
        # from the queue (and the dead store named by `check`), never held forever.
        "archive-push-queue-max=1GiB",
        "archive-timeout=60",
    ]
    for n, store in enumerate(chosen(data, stores), start=1):
        lines += repo_lines(n, store)
        lines.append(f"repo{n}-retention-full=2")
        if data.encryption_key:
            lines += [
                f"repo{n}-cipher-type=aes-256-cbc",
                f"repo{n}-cipher-pass={data.encryption_key}",
            ]
    lines += [
        # Which repository each replayed segment came from ("found ... in the repo2"),
        # in the host's log: the order of fetch_wal is seen to hold.
        "[global:archive-get]",
        "log-level-file=detail",
        f"[{service}]",
        f"pg1-path={DATA}",
        f"pg1-port={port}",
        f"pg1-socket-path={CONF}/run",
    ]
    return "\n".join(lines) + "\n"


def pgbackrest(conf: str, stanza: str, rest: str) -> str:
    return f"pgbackrest --config={conf}/pgbackrest.conf --stanza={stanza} {rest}"


def postgres_conf(service: str, data: DataConfig, purpose: str) -> str:
    """What the engine sets in PostgreSQL (``failover.conf``, included last). A drill's
    host never archives: its WAL would join the live database's in the repositories."""
    archive = purpose in ("serve", "standby")
    # A restored host archives only once the service was cut over to it (the file
    # ``archiving``, made then): a candidate abandoned after its promotion would
    # otherwise leave its timeline in the archive, and every later restore would follow
    # it instead of the live database's (found by tests/test_pgbackrest_failpoint.py).
    # PostgreSQL keeps the WAL meanwhile and pushes it when the file appears.
    push = f"test -f {CONF}/archiving && " + pgbackrest(CONF, service, "archive-push %p")
    push = push if archive else "/bin/true"
    get = pgbackrest(CONF, service, 'archive-get %f "%p"')
    lines = [
        "archive_mode = on",
        f"archive_command = '{push}'",
        f"archive_timeout = {max(1, int(data.archive_timeout))}",
        f"restore_command = '{get}'",
        f"unix_socket_directories = '{CONF}/run'",
        "wal_level = replica",
    ]
    return "\n".join(lines) + "\n"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def restore_order(
    data: DataConfig, stores: Sequence[StoreBase], blocked: Collection[str]
) -> tuple[list[int], str]:
    """The repositories in the order a new host tries them: those whose store's
    ``provider`` is blocked last (a blocked company may still serve reads, as the other
    engine's restore reads such a store, but never before a store that is not blocked),
    and the words saying which went last and why."""
    repos = list(enumerate(chosen(data, stores), start=1))
    last = [(n, s) for n, s in repos if s.provider and s.provider in blocked]
    order = [n for n, s in repos if (n, s) not in last] + [n for n, _ in last]
    why = ", ".join(
        f"store {s.name} (repository {n}), its provider {s.provider} is blocked" for n, s in last
    )
    return order, why


def fetch_wal(service: str, order: Sequence[int]) -> str:
    """The replay's ``restore_command``. pgBackRest's archive-get walks repo1..N and takes
    a segment from the first repository that holds it, whatever failover's order: with a
    store's provider blocked, each repository is asked alone (``--repo``) in ``order``,
    so WAL comes from a blocked store only when no other holds it. Only the first
    runs asynchronously: its prefetching spool is for that repository's answers alone."""
    get = 'archive-get %f "%p"'
    if not order:
        return pgbackrest(CONF, service, get)
    first, *rest = order
    calls = [pgbackrest(CONF, service, f"--repo={first} {get}")]
    calls += [pgbackrest(CONF, service, f"--repo={n} --no-archive-async {get}") for n in rest]
    return "{ " + " || ".join(calls) + "; }"


# The last segment replayed, for the restore step's report. Not a timeline's history
# file: a promotion fetches those last (choosing its timeline), and once a failover left
# one in the archive, the report named it instead of a segment and lost its time.
_LAST_WAL = " && { case %f in *.*) ;; *) echo %f > " + CONF + "/last-wal ;; esac; }"


def host_line(
    service: str,
    data: DataConfig,
    stores: Sequence[StoreBase],
    port: int,
    purpose: str,
    blocked: Collection[str] = (),
) -> str:
    """The ``run.restore`` line of engine pgbackrest (see the module's docstring);
    ``blocked``: the providers blocked now (see :func:`restore_order`)."""
    pg = data.postgres
    assert pg is not None
    order, last = restore_order(data, stores, blocked)
    script = _SCRIPT.format(
        user=shlex.quote(pg.user),
        bin=shlex.quote(pg.bin_dir),
        stanza=shlex.quote(service),
        repos=" ".join(str(n) for n in order),
        last=shlex.quote(last),
        conf=_b64(render_conf(service, data, stores, port)),
        pgconf=_b64(postgres_conf(service, data, purpose)),
        restore_cmd=shlex.quote(fetch_wal(service, order if last else []) + _LAST_WAL),
        initdb=pg.initdb,
        hba=_b64("".join(line + "\n" for line in pg.hba)),
    )
    # The data directory outside the encoded script: its placeholders are filled in
    # with the host's like every run.restore line's.
    return f"printf %s {_b64(script)} | base64 -d | D={shlex.quote(pg.data_dir)} /bin/sh -s"


_SCRIPT = r"""set -e
case "$D" in /*) ;; *) D="$PWD/$D" ;; esac
C="$D-pgbackrest"
U={user}
as() {{
  if [ "$(id -u)" = 0 ]; then setpriv --reuid="$U" --regid="$U" --init-groups -- "$@"; else "$@"; fi
}}
fill() {{ base64 -d | sed "s|@DATA@|$D|g; s|@CONF@|$C|g"; }}
mkdir -p "$C/spool" "$C/log" "$C/lock" "$C/run" "$D"
printf %s {conf} | fill > "$C/pgbackrest.conf"
chmod 700 "$C" "$D"; chmod 600 "$C/pgbackrest.conf"
chown -R "$U:" "$C" "$D" 2>/dev/null || true
if [ -f "$D/PG_VERSION" ] && [ -f "$C/restored" ]; then
  # This host's own cluster, restarted: the engine only makes new hosts' data.
  printf %s {pgconf} | fill > "$D/failover.conf"
  exit 0
fi
rm -f "$C/restored" "$C/last-wal" "$C/archiving" "$C/restore-failed"
printf %s {last} > "$C/restore-last"
started=$(date +%s)
failed=""
# A restore killed midway leaves its workers writing into $D for a moment: the next
# repository's restore starts once they are gone (else they could overwrite its files).
settle() {{
  i=0
  while grep -qsa -- "$C/[p]gbackrest.conf.*restore" /proc/[0-9]*/cmdline && [ $i -lt 300 ]; do
    i=$((i+1)); sleep 0.2
  done
}}
for n in {repos}; do
  settle
  if [ -n "$(ls -A "$D")" ]; then delta="--delta --force"; else delta=""; fi
  get=$(printf %s {restore_cmd} | sed "s|@CONF@|$C|g")
  if out=$(as pgbackrest --config="$C/pgbackrest.conf" --stanza={stanza} --repo=$n \
      restore --type=standby $delta --recovery-option=restore_command="$get" 2>&1); then
    set=$(printf '%s\n' "$out" | sed -n 's/.*restore backup set \([^ ,]*\).*/\1/p' | head -n 1)
    echo "restored $set $n $started $(date +%s)" > "$C/restored"
    break
  else
    status=$?
  fi
  case "$out" in
    *"[075]"*|*"no backup set"*|*"missing stanza"*|*"[055]"*backup.info*) ;;
    *) failed="$failed repo$n: exit $status $(printf '%s' "$out" | tail -n 1);" ;;
  esac
done
# What the restore step reports beside the repository that gave the backup.
printf '%s' "$failed" > "$C/restore-failed"
if [ ! -f "$C/restored" ]; then
  if [ -n "$failed" ]; then
    echo "pgbackrest: no repository gives a backup and some failed:$failed not starting empty" >&2
    exit 1
  fi
  rm -rf "$D"; mkdir -p "$D"; chown "$U:" "$D"; chmod 700 "$D"
  as {bin}/initdb -D "$D" {initdb} >/dev/null
  printf %s {hba} | base64 -d >> "$D/pg_hba.conf"
  echo "include_if_exists = 'failover.conf'" >> "$D/postgresql.conf"
  echo "initdb - 0 $started $(date +%s)" > "$C/restored"
  touch "$C/archiving"  # a new database: nothing else to follow
fi
printf %s {pgconf} | fill > "$D/failover.conf"
chown "$U:" "$D/failover.conf" "$C/restored"
"""
