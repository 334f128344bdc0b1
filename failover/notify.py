"""Notifications: a webhook, Slack, PagerDuty, email (and Apprise as an extra).

What this module knows: the event a notice carries, and how each kind of target (the
models of :mod:`failover.notify_config`) is sent one (stdlib only: ``urllib``, ``smtplib``; Apprise
is imported only when an ``apprise`` target is configured). When and how often a
notice is sent, and what is journaled, is :mod:`failover.delivery`'s job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from dataclasses import field
from email.message import EmailMessage
from email.utils import formatdate
from email.utils import make_msgid
from typing import Any

from failover.notify_config import EVENTS
from failover.notify_config import INCIDENT
from failover.notify_config import PAGING
from failover.notify_config import AppriseTarget
from failover.notify_config import BaseTarget
from failover.notify_config import EmailTarget
from failover.notify_config import NotifyTarget
from failover.notify_config import PagerDutyTarget
from failover.notify_config import SlackTarget
from failover.notify_config import WebhookTarget
from providers.base import TransientError
from providers.retry import call_with_retries

TEST = "test"
USER_AGENT = "failover-notify/1"


@dataclass(frozen=True)
class Notice:
    """One event, as every target gets it. ``key`` names the event once and for all (a
    delivery is never repeated for the same key); ``incident`` groups the events of one
    outage (PagerDuty's dedup_key)."""

    event: str
    service: str
    status: str
    reason: str
    at: str
    generation: int | None = None
    origin: dict[str, Any] | None = None
    to: dict[str, Any] | None = None
    key: str = ""
    incident: str | None = None
    action: str = "trigger"  # trigger | resolve (PagerDuty)
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The webhook body of the contract (section 10)."""
        doc = {
            "event": self.event,
            "service": self.service,
            "status": self.status,
            "from": self.origin,
            "to": self.to,
            "reason": self.reason,
            "generation": self.generation,
            "at": self.at,
        }
        return {**self.extra, **doc}

    def summary(self) -> str:
        """One readable line: what happened, from where to where, and why."""
        where = ""
        if self.origin or self.to:
            where = f" from {_place(self.origin)} to {_place(self.to)}"
        head = f"[failover] {self.service}: {self.event.replace('_', ' ')} {self.status}"
        return f"{head}{where}: {self.reason}"[:1000]

    @classmethod
    def from_body(cls, body: dict[str, Any], key: str, incident: str | None) -> Notice:
        known = ("event", "service", "status", "from", "to", "reason", "generation", "at")
        return cls(
            event=str(body.get("event")),
            service=str(body.get("service")),
            status=str(body.get("status")),
            reason=str(body.get("reason") or ""),
            at=str(body.get("at")),
            generation=body.get("generation"),
            origin=body.get("from"),
            to=body.get("to"),
            key=key,
            incident=incident,
            action=str(body.get("_action") or "trigger"),
            extra={k: v for k, v in body.items() if k not in known and not k.startswith("_")},
        )


def _place(host: dict[str, Any] | None) -> str:
    if not host:
        return "nowhere"
    address = f" ({host['address']})" if host.get("address") else ""
    return f"{host.get('provider')}{address}"


def signature(secret: str, body: bytes) -> str:
    """The ``X-Failover-Signature`` header value: a receiver recomputes it over the raw
    body with the shared secret and compares (constant time) before trusting it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class DeliveryFailed(Exception):
    """A target refused or could not be reached; the message says how."""


class _Transient(TransientError):
    """Worth another attempt within the round: a timeout, a refused connection, a 5xx."""


# --------------------------------------------------------------------------- senders


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> str:
    url, login = split_login(url)
    request = urllib.request.Request(url, data=body, method="POST")
    for name, value in {"Content-Type": "application/json", "User-Agent": USER_AGENT}.items():
        request.add_header(name, value)
    if login is not None:
        request.add_header("Authorization", "Basic " + b64encode(login.encode()).decode())
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        message = f"HTTP {exc.code} {exc.reason}"
        if exc.code >= 500 or exc.code == 429:
            raise _Transient(message) from None
        raise DeliveryFailed(message) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Transient(f"cannot reach {_host_of(url)}: {reason or type(exc).__name__}") from None


def split_login(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@`` part, and that part (percent-decoded, as
    ``user:password`` for HTTP basic auth), or None when it has none."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    login = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
    return urllib.parse.urlunsplit(parts._replace(netloc=hostport)), login


def _host_of(url: str) -> str:
    # Never the whole URL (Slack's and many webhooks' URLs are the credential), nor
    # its userinfo: the host and port only.
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return host or "the target"


def _webhook(target: WebhookTarget, notice: Notice) -> str:
    body = json.dumps(notice.body(), sort_keys=True).encode()
    headers = dict(target.headers)
    if target.secret:
        headers["X-Failover-Signature"] = signature(target.secret, body)
    return _post(target.url, body, headers, target.timeout)


def _slack(target: SlackTarget, notice: Notice) -> str:
    text = notice.summary()
    if notice.generation is not None:
        text += f" (generation {notice.generation}, {notice.at})"
    return _post(target.url, json.dumps({"text": text}).encode(), {}, target.timeout)


def pagerduty_event(target: PagerDutyTarget, notice: Notice) -> dict[str, Any]:
    """The Events API v2 body: one dedup_key per incident, so a resolve closes it."""
    dedup = notice.incident or notice.key
    if notice.action == "resolve":
        return {"routing_key": target.routing_key, "event_action": "resolve", "dedup_key": dedup}
    severity = {TEST: "info"}.get(notice.event, "critical" if notice.event in PAGING else "warning")
    return {
        "routing_key": target.routing_key,
        "event_action": "trigger",
        "dedup_key": dedup,
        "payload": {
            "summary": notice.summary(),
            "source": f"failover/{notice.service}",
            "severity": severity,
            "component": notice.service,
            "group": "failover",
            "class": notice.event,
            "custom_details": notice.body(),
        },
    }


def _pagerduty(target: PagerDutyTarget, notice: Notice) -> str:
    body = json.dumps(pagerduty_event(target, notice)).encode()
    return _post(target.url, body, {}, target.timeout)


def _email(target: EmailTarget, notice: Notice) -> str:
    message = EmailMessage()
    # One line: a reason may hold a line break, which a header cannot.
    message["Subject"] = " ".join(notice.summary()[:200].split())
    message["From"] = target.sender
    message["To"] = ", ".join(target.to)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id(notice, target.sender)
    message.set_content(
        notice.summary() + "\n\n" + json.dumps(notice.body(), indent=2, sort_keys=True) + "\n"
    )
    host, port = target.address()
    try:
        with smtplib.SMTP(host, port, timeout=target.timeout) as smtp:
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context(cafile=target.ca_file))
                smtp.ehlo()
            elif target.starttls:
                # Credentials and the message must not cross the network in the clear.
                raise DeliveryFailed(f"{host}:{port} does not offer STARTTLS (starttls: true)")
            if target.username:
                smtp.login(target.username, target.password or "")
            refused = smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryFailed(f"SMTP login refused: {exc.smtp_code}") from None
    except smtplib.SMTPResponseException as exc:
        err = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
        if exc.smtp_code >= 500:
            raise DeliveryFailed(f"SMTP {exc.smtp_code} {err}".strip()) from None
        raise _Transient(f"SMTP {exc.smtp_code} {err}".strip()) from None
    except ssl.SSLError as exc:
        raise DeliveryFailed(f"STARTTLS with {host}:{port} failed: {exc.reason}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise _Transient(
            f"cannot send through {host}:{port}: {exc or type(exc).__name__}"
        ) from None
    if refused:
        raise DeliveryFailed(f"refused recipients: {', '.join(sorted(refused))}")
    return f"mail accepted by {host}:{port} for {len(target.to)} recipient(s)"


def message_id(notice: Notice, sender: str) -> str:
    """The same for every try of one notice (a retry is recognised as the same mail),
    different for every notice: built from its key, at the sender's domain."""
    domain = sender.rpartition("@")[2].strip(" >") or "failover.invalid"
    if not notice.key:
        return make_msgid(domain=domain)
    return f"<{hashlib.sha256(notice.key.encode()).hexdigest()[:32]}@{domain}>"


def _apprise(target: AppriseTarget, notice: Notice) -> str:
    try:
        import apprise  # type: ignore[import-not-found]
    except ImportError:
        raise DeliveryFailed("apprise is not installed: pip install 'failover[apprise]'") from None
    sender = apprise.Apprise()
    for url in target.urls:
        if not sender.add(url):
            raise DeliveryFailed("apprise does not understand one of the URLs")
    if not sender.notify(title=notice.summary()[:200], body=json.dumps(notice.body(), indent=2)):
        raise _Transient("apprise could not deliver to every URL")
    return f"apprise delivered to {len(target.urls)} URL(s)"


_SENDERS: dict[str, Any] = {
    "webhook": _webhook,
    "slack": _slack,
    "pagerduty": _pagerduty,
    "email": _email,
    "apprise": _apprise,
}


def wants(target: BaseTarget, notice: Notice) -> bool:
    """Does ``target`` take this notice? A resolve goes to PagerDuty (as the incident's
    resolve) and to the targets that take ``resolved``; a test event to every target."""
    if notice.action == "resolve" and isinstance(target, PagerDutyTarget):
        return True
    return notice.event == TEST or notice.event in target.events


def send(target: BaseTarget, notice: Notice) -> str:
    """Deliver one notice, retrying transient failures with backoff (bounded by
    ``retries`` and the target's budget). Returns what the target answered; raises
    :class:`DeliveryFailed` with the reason."""
    sender = _SENDERS[getattr(target, "type", "")]
    try:
        result: str = call_with_retries(
            lambda: sender(target, notice),
            attempts=target.retries + 1,
            max_time=target.budget(),
            initial=0.5,
            max_wait=5.0,
        )
    except _Transient as exc:
        raise DeliveryFailed(str(exc)) from None
    except DeliveryFailed:
        raise
    except Exception as exc:
        # Whatever a library raises on input nobody foresaw (http.client refuses a
        # header value with a line break, smtplib an address): this target failed,
        # and the caller goes on to the next one.
        raise DeliveryFailed(f"cannot send: {type(exc).__name__}: {exc}") from None
    return result


__all__ = [
    "EVENTS",
    "INCIDENT",
    "PAGING",
    "TEST",
    "AppriseTarget",
    "DeliveryFailed",
    "EmailTarget",
    "Notice",
    "NotifyTarget",
    "PagerDutyTarget",
    "SlackTarget",
    "WebhookTarget",
    "pagerduty_event",
    "send",
    "signature",
    "split_login",
    "wants",
]
