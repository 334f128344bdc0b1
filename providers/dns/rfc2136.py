"""RFC 2136 dynamic DNS updates (BIND, Knot, PowerDNS, ...): a zone you host yourself.

Why this backend exists: when the company that runs your servers also runs your DNS,
closing the account takes away the one lever a failover has. A zone on a server you
control (or at a DNS host that is not your compute provider) survives that.

How a change is made: one TSIG-signed UPDATE message that deletes the record set and
adds the new one. The server applies an UPDATE as a unit, so resolvers never see the
name without an address. With ``expect`` the message also carries a prerequisite on
the current values (RFC 2136 section 2.4.2, "RRset exists, value dependent"): a watcher
that was paused while another one moved the service gets NXRRSET instead of undoing the
newer cutover. After the update, the server itself (never the system resolver, whose
cache would lie) is asked until it answers the new values, within a bound.

Several changes (the cutovers of one round) go in one message, each with its own
prerequisite. The server checks every prerequisite before it changes anything, so one
stale condition refuses the whole message: then each set is read, and the changes whose
conditions hold are sent again together, while the stale one gets its ConflictError.

dnspython is a core dependency, but it is still imported inside the functions, so that
loading a config that names this backend costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Annotated
from typing import Any
from typing import Literal
from typing import TypeVar

from pydantic import Field
from pydantic import SecretStr
from pydantic import WithJsonSchema
from pydantic import field_validator

from providers.base import AccountBlocked
from providers.base import AccountReport
from providers.base import Check
from providers.base import ConflictError
from providers.base import DnsProvider
from providers.base import DnsSettings
from providers.base import Duration
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import Record
from providers.base import RecordChange
from providers.base import RetryingDnsSettings
from providers.base import TransientError
from providers.base import as_settings
from providers.dns._rfc2136 import Change
from providers.dns._rfc2136 import absolute
from providers.dns._rfc2136 import canonical
from providers.dns._rfc2136 import rdata_values
from providers.dns._rfc2136 import update_message
from providers.dns._rfc2136_wire import _address
from providers.dns._rfc2136_wire import _exchange
from providers.dns._rfc2136_wire import _Rejected
from providers.dns._rfc2136_wire import _Unsettled
from providers.dns._rfc2136_wire import query_authoritative
from providers.dns._rfc2136_wire import split_server
from providers.retry import call_with_retries

T = TypeVar("T")

TsigAlgorithm = Literal[
    "hmac-sha256", "hmac-sha512", "hmac-sha384", "hmac-sha224", "hmac-sha1", "hmac-md5"
]


class Rfc2136Settings(RetryingDnsSettings):
    """``dns: {type: rfc2136, ...}``: a primary server that accepts TSIG-signed updates."""

    type: Literal["rfc2136"] = "rfc2136"  # type: ignore[assignment]
    server: Annotated[
        list[str],
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1},
                ]
            }
        ),
    ] = Field(
        description=(
            "the primary server as host:port (port 53 when left out; [v6]:port for IPv6). "
            "A list may be given: the first that answers is used"
        ),
        min_length=1,
    )
    key_name: str = Field(description="TSIG key name, as in the server's `key` statement")
    key_secret: SecretStr = Field(
        description="TSIG secret (base64); put `${ENV_VAR}` here, never the secret itself"
    )
    key_algorithm: TsigAlgorithm = Field(default="hmac-sha256", description="TSIG algorithm")
    timeout: Duration = Field(default=5.0, description="how long to wait for one server answer")
    propagation_timeout: Duration = Field(
        default=30.0,
        description="how long to wait, after an update, for the server to answer the new values",
    )
    poll_interval: Duration = Field(
        default=0.5, description="pause between the queries that wait for the new values"
    )
    # A DNS server answers in milliseconds or not at all: fewer, shorter retries.
    retry_attempts: int = Field(default=3, ge=1, le=50)
    retry_max_time: Duration = Field(default=30.0, description="total time retries may take")
    vendor: str | None = Field(
        default=None,
        description=(
            "who runs the server (e.g. aws, google, microsoft, hetzner); doctor warns when it "
            "is the company behind one of the service's compute providers. Empty: self-hosted"
        ),
    )

    @field_validator("server", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("server")
    @classmethod
    def _valid_servers(cls, value: list[str]) -> list[str]:
        for item in value:
            split_server(item)
        return value

    @field_validator("key_secret")
    @classmethod
    def _base64(cls, value: SecretStr) -> SecretStr:
        # The message never repeats the value: it is a credential.
        try:
            base64.b64decode(value.get_secret_value(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                "is not valid base64 (use the `secret` of the server's key statement, "
                "e.g. from `tsig-keygen`)"
            ) from None
        if not value.get_secret_value():
            raise ValueError("is empty (is the environment variable set?)")
        return value

    @field_validator("vendor")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.strip().lower() or None if value else None


# --------------------------------------------------------------------------- provider


class Rfc2136Dns(DnsProvider, kind="rfc2136", settings=Rfc2136Settings, vendor=""):
    """A zone on a server you run (or rent), changed with TSIG-signed RFC 2136 updates."""

    # One UPDATE message carries many record sets (up to 64 KiB over TCP).
    batches_changes = True

    def __init__(self, settings: DnsSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.cfg = as_settings(Rfc2136Settings, settings)
        # Who hosts the server, for doctor's shared-fate warning (self-hosted: "").
        self.vendor = self.cfg.vendor or ""  # type: ignore[misc]
        self._servers = [(s, *split_server(s)) for s in self.cfg.server]

    # ----------------------------------------------------------------- plumbing

    def _keyring(self) -> tuple[Any, Any, Any]:
        import dns.name
        import dns.tsig

        name = dns.name.from_text(self.cfg.key_name)
        secret = base64.b64decode(self.cfg.key_secret.get_secret_value())
        algorithm = dns.name.from_text(self.cfg.key_algorithm)
        return {name: dns.tsig.Key(name, secret, algorithm)}, name, algorithm

    def _zone(self) -> str:
        return absolute(self.cfg.zone, self.cfg.zone)

    def _rejected(self, server: str, code: str, detail: str) -> AccountBlocked:
        return AccountBlocked(
            f"key {self.cfg.key_name!r} rejected by server {server} for zone "
            f"{self.cfg.zone}: {detail}",
            provider=self.name,
            code=code,
            hint=(
                "check key_name, key_secret and key_algorithm against the server's key "
                "statement, and that its update-policy/allow-update grants this key the zone"
            ),
        )

    def _on_servers(self, what: str, fn: Callable[[str, str, int], T]) -> T:
        """Run ``fn(server, address, port)`` on the first server that answers.

        A server that times out or refuses the connection is skipped; one that answers
        (even with an error) is the one we talk to. All silent: TransientError."""
        import dns.exception

        failures = []
        for server, host, port in self._servers:
            try:
                address = _address(host, port)
                return fn(server, address, port)
            except (dns.exception.Timeout, OSError, TransientError) as exc:
                if isinstance(exc, TransientError) and exc.code == "propagation":
                    raise  # that server took the update: do not send it elsewhere
                detail = str(exc) or type(exc).__name__
                failures.append(f"{server}: {detail}")
                self.context.log(f"dns: {server} did not answer ({detail}); trying the next one")
        raise TransientError(
            f"no DNS server answered {what} ({'; '.join(failures)})",
            provider=self.name,
            code="timeout",
            hint="check that the server runs and this machine can reach it (TCP and UDP)",
        )

    def _read(
        self, server: str, address: str, port: int, fqdn: str, rtype: str, *, signed: bool = True
    ) -> Record | None:
        import dns.exception
        import dns.flags
        import dns.message
        import dns.name
        import dns.rcode
        import dns.rdatatype

        rdtype = dns.rdatatype.from_text(rtype)
        query = dns.message.make_query(fqdn, rdtype)
        query.flags &= ~dns.flags.RD
        # Signed too, so servers that answer only this key (allow-query { key ...; }) work.
        if signed:
            keyring, keyname, algorithm = self._keyring()
            query.use_tsig(keyring, keyname, algorithm=algorithm)
        try:
            response = _exchange(query, address, port, self.cfg.timeout, tcp=True)
        except _Rejected as exc:
            raise self._rejected(server, exc.code, exc.detail) from None
        except dns.exception.Timeout:
            raise
        except dns.exception.DNSException as exc:
            raise ProviderError(
                f"{server}: bad answer to a query: {exc}", provider=self.name
            ) from None
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return None
        if rcode != dns.rcode.NOERROR:
            code = dns.rcode.to_text(rcode)
            if rcode == dns.rcode.SERVFAIL:
                raise TransientError(f"{server} answered SERVFAIL", provider=self.name, code=code)
            raise ProviderError(
                f"{server} answered {code} to a query for {fqdn} {rtype}",
                provider=self.name,
                code=code,
                hint=f"is {server} authoritative for {self.cfg.zone}?",
            )
        wanted = dns.name.from_text(fqdn)
        for rrset in response.answer:
            if rrset.rdtype == rdtype and rrset.name == wanted:
                return Record(fqdn.rstrip("."), rtype, rdata_values(rrset), int(rrset.ttl))
        return None

    def _retry(self, fn: Callable[[], T]) -> T:
        return call_with_retries(
            fn, attempts=self.cfg.retry_attempts, max_time=self.cfg.retry_max_time
        )

    # ----------------------------------------------------------------- interface

    def get_record(self, name: str, rtype: str = "A") -> Record | None:
        fqdn = absolute(name, self.cfg.zone)
        rtype = rtype.upper()
        return self._retry(
            lambda: self._on_servers(
                f"a query for {fqdn} {rtype}",
                lambda server, address, port: self._read(server, address, port, fqdn, rtype),
            )
        )

    def replace_record(self, change: RecordChange) -> Record:
        (result,) = self.replace_records([change])
        if isinstance(result, ProviderError):
            raise result
        return result

    def replace_records(self, changes: Sequence[RecordChange]) -> list[Record | ProviderError]:
        """Up to ``max_batch`` changes in one UPDATE message, each with its own
        prerequisite; a change the server refuses the message over fails alone."""
        out: list[Record | ProviderError] = []
        for start in range(0, len(changes), self.max_batch):
            out.extend(self._replace_batch(changes[start : start + self.max_batch]))
        return out

    def _replace_batch(self, changes: Sequence[RecordChange]) -> list[Record | ProviderError]:
        results: list[Record | ProviderError | None] = [None] * len(changes)
        batch: dict[int, Change] = {}
        for i, change in enumerate(changes):
            try:
                batch[i] = self._plan(change)
            except ProviderError as exc:  # a value that is no address: never sent
                results[i] = exc
        if len({(c.fqdn.lower(), c.rtype) for c in batch.values()}) < len(batch):
            # One message would judge both changes of a set against its old values; in
            # order, each sees the one before.
            return self.one_by_one(changes)
        if batch:
            for i, result in zip(batch, self._send_batch(list(batch.values())), strict=True):
                results[i] = result
        # None: the server refused the message over a change its answer does not name
        # (NOTZONE, a race on a prerequisite): alone, each gets its own answer.
        alone = [i for i, result in enumerate(results) if result is None]
        for i, result in zip(alone, self.one_by_one([changes[i] for i in alone]), strict=True):
            results[i] = result
        return [result for result in results if result is not None]

    def _plan(self, change: RecordChange) -> Change:
        name, rtype, values, ttl, expect = change
        rtype = rtype.upper()
        expected = None if expect is None else canonical(rtype, expect, self.name)
        wanted = canonical(rtype, values, self.name)
        return Change(absolute(name, self.cfg.zone), rtype, wanted, int(ttl), expected)

    def _send_batch(self, batch: list[Change]) -> list[Record | ProviderError | None]:
        what = f"an update of {batch[0].label}" if len(batch) == 1 else "an update"
        if len(batch) > 1:
            what += f" of {len(batch)} record sets"
        try:
            return self._retry(
                lambda: self._on_servers(
                    what, lambda server, address, port: self._apply(server, address, port, batch)
                )
            )
        except _Unsettled as exc:  # the late ones have their error, the others are done
            return list(exc.results)
        except ProviderError as exc:  # blocked, unreachable: the whole message failed
            return [exc] * len(batch)

    def _apply(
        self, server: str, address: str, port: int, batch: list[Change], *, again: bool = True
    ) -> list[Record | ProviderError | None]:
        """Send ``batch`` to ``server`` as one UPDATE and wait until it answers the new
        values. A failed prerequisite is sorted out set by set (:meth:`_sort_out`);
        ``again`` allows one more message for the changes whose prerequisites hold."""
        import dns.rcode

        rcode = self._send(server, address, port, batch)
        if rcode == dns.rcode.NOERROR:
            moves = "; ".join(f"{c.fqdn} {c.rtype} -> {c.wanted or 'removed'}" for c in batch)
            many = f"{len(batch)} changes in one update: " if len(batch) > 1 else ""
            self.context.log(f"dns: {server} accepted {many}{moves}")
            return list(self._settle(server, address, port, batch))
        if rcode in (dns.rcode.NXRRSET, dns.rcode.YXRRSET):
            return self._sort_out(server, address, port, batch, again=again)
        if len(batch) > 1:
            return [None] * len(batch)
        code = dns.rcode.to_text(rcode)
        raise ProviderError(
            f"{server} answered {code} to an update of {batch[0].label}",
            provider=self.name,
            code=code,
        )

    def _send(self, server: str, address: str, port: int, batch: list[Change]) -> Any:
        """One UPDATE with every change of ``batch``: the server's rcode, unless the answer
        stops the whole message (key refused, SERVFAIL): that is raised."""
        import dns.exception
        import dns.rcode

        message = update_message(self._zone(), self._keyring(), batch)
        try:
            response = _exchange(message, address, port, self.cfg.timeout, tcp=True)
        except _Rejected as exc:
            raise self._rejected(server, exc.code, exc.detail) from None
        except dns.exception.Timeout:
            raise
        except dns.exception.DNSException as exc:
            raise ProviderError(
                f"{server}: bad answer to an update: {exc}", provider=self.name
            ) from None
        rcode = response.rcode()
        if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH):
            code = dns.rcode.to_text(rcode)
            raise self._rejected(server, code, f"the server answered {code}")
        if rcode == dns.rcode.SERVFAIL:
            raise TransientError(
                f"{server} answered SERVFAIL to an update of {batch[0].label}"
                + (f" and {len(batch) - 1} more" if len(batch) > 1 else ""),
                provider=self.name,
                code="SERVFAIL",
            )
        return rcode

    def _sort_out(
        self, server: str, address: str, port: int, batch: list[Change], *, again: bool
    ) -> list[Record | ProviderError | None]:
        """A prerequisite failed and the server changed nothing; its answer does not say
        whose. Each set is read: one already holding its new values is done (an earlier
        attempt landed, its answer lost), one whose values are not ``expected`` has its
        conflict, the others go again together (once) or, after that, each alone."""
        results: list[Record | ProviderError | None] = [None] * len(batch)
        rest: list[int] = []
        for i, change in enumerate(batch):
            current = self._read(server, address, port, change.fqdn, change.rtype)
            now = current.values if current else []
            if now == change.wanted:
                results[i] = change.record(current)
            elif change.expected is not None and now != change.expected:
                results[i] = self._conflict(change, now)
            else:
                rest.append(i)
        if rest and again:
            try:
                retried = self._apply(server, address, port, [batch[i] for i in rest], again=False)
            except _Unsettled as exc:  # its results must answer for the whole batch
                for i, came_to in zip(rest, exc.results, strict=True):
                    results[i] = came_to
                exc.results = [r for r in results if r is not None]
                raise
            for i, result in zip(rest, retried, strict=True):
                results[i] = result
        elif rest and len(batch) == 1:
            # Refused twice, yet it reads as expected: someone writes this set right now.
            results[0] = self._conflict(batch[0], batch[0].expected or [])
        return results

    def _conflict(self, change: Change, now: list[str]) -> ConflictError:
        return ConflictError(
            f"someone else changed the record {change.label}: expected "
            f"{change.expected or 'no record'}, the server has {now or 'no record'}",
            provider=self.name,
            code="YXRRSET" if change.expected == [] else "NXRRSET",
            hint="re-read the record and decide again",
        )

    def _settle(self, server: str, address: str, port: int, batch: list[Change]) -> list[Record]:
        """Ask the server that took the update until it answers every change's new
        values (bounded): one read per set, then again only for the late ones."""
        import dns.exception

        deadline = time.monotonic() + self.cfg.propagation_timeout
        found: dict[int, Record] = {}
        last: dict[int, Record | None] = {}
        while True:
            for i, change in enumerate(batch):
                if i in found:
                    continue
                try:
                    record = self._read(server, address, port, change.fqdn, change.rtype)
                except (dns.exception.Timeout, OSError):
                    continue  # no answer is not "removed"
                last[i] = record
                if (record.values if record else []) == change.wanted:
                    found[i] = change.record(record)
            if len(found) == len(batch):
                return [found[i] for i in range(len(batch))]
            if time.monotonic() >= deadline:
                raise self._unsettled(server, batch, found, last)
            time.sleep(self.cfg.poll_interval)

    def _unsettled(
        self,
        server: str,
        batch: list[Change],
        found: dict[int, Record],
        last: dict[int, Record | None],
    ) -> _Unsettled:
        results: list[Record | ProviderError] = []
        for i, change in enumerate(batch):
            if i in found:
                results.append(found[i])
                continue
            seen = last.get(i)
            results.append(
                TransientError(
                    f"{server} accepted the update of {change.label} but still answers "
                    f"{seen.values if seen else 'nothing'} after "
                    f"{self.cfg.propagation_timeout:g}s",
                    provider=self.name,
                    code="propagation",
                    hint="the server may be slow to apply updates; the update will be retried",
                )
            )
        late = [r for r in results if isinstance(r, TransientError)]
        more = f" (and {len(late) - 1} more record sets)" if len(late) > 1 else ""
        return _Unsettled(late[0].message + more, results, provider=self.name, hint=late[0].hint)

    def check(self) -> AccountReport:
        import dns.exception

        checks: list[Check] = []
        answered: tuple[str, str, int] | None = None
        for server, host, port in self._servers:
            try:
                address = _address(host, port)
                # Unsigned: whether the server serves the zone, apart from the key.
                soa = self._read(server, address, port, self._zone(), "SOA", signed=False)
            except (dns.exception.Timeout, OSError, TransientError) as exc:
                checks.append(Check(f"server {server}", False, f"no answer: {exc}", "warning"))
                continue
            except ProviderError as exc:
                checks.append(Check(f"server {server}", False, exc.message))
                continue
            if soa is None:
                checks.append(
                    Check(f"server {server}", False, f"has no SOA for zone {self.cfg.zone}")
                )
                continue
            serial = soa.values[0].split()[2] if soa.values else "?"
            checks.append(
                Check(
                    f"server {server}",
                    True,
                    f"answers SOA for zone {self.cfg.zone} (serial {serial})",
                )
            )
            answered = (server, address, port)
            break
        if answered is None:
            for check in checks:
                check.level = "error"
            return AccountReport("unknown", checks, f"no server answers for zone {self.cfg.zone}")
        server, address, port = answered
        try:
            self._signed_noop(server, address, port)
        except AccountBlocked as exc:
            checks.append(Check("key accepted", False, exc.message))
            return AccountReport("blocked", checks, exc.message)
        except (dns.exception.Timeout, OSError) as exc:
            checks.append(Check("key accepted", False, f"no answer: {exc}"))
            return AccountReport("unknown", checks, f"{server} did not answer a signed update")
        except ProviderError as exc:
            checks.append(Check("key accepted", False, exc.message))
            return AccountReport("unknown", checks, exc.message)
        checks.append(
            Check(
                "key accepted",
                True,
                f"{server} verified a signed update from key {self.cfg.key_name!r} "
                "(a no-op: the prerequisite fails on purpose)",
            )
        )
        return AccountReport("available", checks)

    def _signed_noop(self, server: str, address: str, port: int) -> None:
        """A TSIG-signed UPDATE whose prerequisite always fails, so it changes nothing:
        the zone apex must be unused (it never is: it has an SOA). The server verifies the
        signature before prerequisites, so the answer tells whether the key is accepted."""
        import dns.exception
        import dns.rcode
        import dns.update

        keyring, keyname, algorithm = self._keyring()
        update = dns.update.UpdateMessage(
            self._zone(), keyring=keyring, keyname=keyname, keyalgorithm=algorithm
        )
        update.absent(self._zone())  # "name is not in use": false at the apex
        try:
            response = _exchange(update, address, port, self.cfg.timeout, tcp=True)
        except _Rejected as exc:
            raise self._rejected(server, exc.code, exc.detail) from None
        except dns.exception.Timeout:
            raise
        except dns.exception.DNSException as exc:
            raise ProviderError(f"{server}: bad answer: {exc}", provider=self.name) from None
        rcode = response.rcode()
        if rcode in (dns.rcode.YXDOMAIN, dns.rcode.NOERROR):
            return
        code = dns.rcode.to_text(rcode)
        if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH):
            raise self._rejected(server, code, f"the server answered {code}")
        raise ProviderError(
            f"{server} answered {code} to a signed no-op update", provider=self.name, code=code
        )


__all__ = ["Rfc2136Dns", "Rfc2136Settings", "query_authoritative", "split_server"]
