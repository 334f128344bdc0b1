"""The status page: the ``status`` document and the journal, drawn as one HTML file.

One self-contained page (inline CSS, inline SVG, no script, no request to anywhere), so
it can be published as it is to stores at several companies (:mod:`failover.publish`),
served by ``watch`` and opened from a file. Everything on it that came from outside
(service names, reasons, provider messages) is untrusted text: the templates are
rendered with autoescaping on. They are our own files, not the operator's, so this
environment is a plain one, apart from the sandbox :mod:`failover.render` keeps for the
cloud-init templates.

The documents are normalised here into what the templates draw (every field present),
so a field the document lacks (no DNS providers, no certificate, no backups yet) is an
empty cell, never a template error.
"""

from __future__ import annotations

import time
from calendar import timegm
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from failover.config import Config
    from failover.engine import Engine

Doc = dict[str, Any]
EVENT_KINDS = ("deploy", "failover", "move", "drill", "standby")
EVENTS_SHOWN = 10
_CLASS = {
    "up": "ok",
    "available": "ok",
    "in_sync": "ok",
    "updated": "ok",
    "succeeded": "ok",
    "down": "bad",
    "blocked": "bad",
    "failed": "bad",
    "lagging": "warn",
    "in_progress": "warn",
}


def css_class(state: Any) -> str:
    return _CLASS.get(str(state), "unk")


def epoch(value: Any) -> float | None:
    """An ISO time (``2026-11-28T10:00:00Z``) or epoch seconds; None when neither."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    from datetime import datetime

    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return float(timegm(parsed.timetuple()))
    return parsed.timestamp()


def span(seconds: Any) -> str:
    """``seconds`` for people: ``0.42 s``, ``12 s``, ``3 min 5 s``, ``2 h 5 min``, ``3 d``."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return ""
    s = max(0.0, float(seconds))
    if s < 10:
        return f"{s:.2f} s"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{int(s // 60)} min {int(s % 60)} s"
    if s < 172800:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{int(s // 86400)} d"


# --------------------------------------------------------------------------- services


def _dns_rows(s: Doc) -> list[Doc]:
    """One row per domain and DNS provider (CONTRACT section 12), or the one record."""
    domains = s.get("domains")
    if not isinstance(domains, list) or not domains:
        dns = s.get("dns")
        domains = [dns] if isinstance(dns, dict) else []
    rows = []
    for domain in domains:
        if not isinstance(domain, dict):
            continue
        name = str(domain.get("name") or s.get("domain") or "")
        providers = domain.get("providers")
        if isinstance(providers, dict) and providers:
            for pname, entry in providers.items():
                entry = entry if isinstance(entry, dict) else {"state": entry}
                state = entry.get("state") or ""
                values = entry.get("values") or []
                rows.append(_dns_row(name, str(pname), state, values, entry.get("error")))
        else:
            state = "error" if domain.get("error") else ""
            rows.append(_dns_row(name, "", state, domain.get("values"), domain.get("error")))
    return rows


def _dns_row(name: str, provider: str, state: Any, values: Any, error: Any) -> Doc:
    shown = ", ".join(str(v) for v in values) if isinstance(values, list) else ""
    return {
        "name": name,
        "provider": provider,
        "state": str(state or ""),
        "cls": "bad" if error else css_class(state),
        "points_to": shown,
        "error": str(error or ""),
    }


def _recovery(s: Doc, now: float) -> Doc | None:
    """The recovery point: the measured one (``data.rpo_s``), else the last backup's age."""
    data = s.get("data")
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("rpo_s"), int | float):
        return {"age": span(data["rpo_s"]), "what": "newest archived write-ahead log"}
    last = data.get("last_backup")
    if not isinstance(last, dict):
        return {"age": "", "what": "no backup yet"}
    age = last.get("age_s")
    taken = epoch(last.get("taken_at"))
    if not isinstance(age, int | float) and taken is not None:
        age = now - taken
    return {"age": span(age), "what": f"backup {last.get('id') or ''}".strip()}


def _certificate(s: Doc, now: float) -> Doc | None:
    """The certificate's expiry, when the document carries one (CONTRACT section 13)."""
    cert = s.get("certificate") or s.get("tls")
    if isinstance(cert, list):
        cert = cert[0] if cert and isinstance(cert[0], dict) else None
    if not isinstance(cert, dict):
        return None
    expires = epoch(cert.get("not_after") or cert.get("expires_at"))
    if expires is None:
        return None
    left = expires - now
    return {
        "not_after": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires)),
        "left": span(left) if left > 0 else "expired",
        "cls": "bad" if left < 7 * 86400 else "warn" if left < 14 * 86400 else "ok",
    }


def _part(s: Doc, key: str) -> Doc:
    value = s.get(key)
    return value if isinstance(value, dict) else {}


def service_view(s: Doc, now: float) -> Doc:
    active, health, standby = _part(s, "active"), _part(s, "health"), _part(s, "standby")
    state = str(health.get("state") or "unknown")
    return {
        "name": str(s.get("service") or ""),
        "domain": str(s.get("domain") or ""),
        "provider": str(active.get("provider") or "") if active else "",
        "address": f"{active.get('address')}:{active.get('port')}" if active else "",
        "since": str(active.get("since") or "") if active else "",
        "state": state,
        "cls": css_class(state),
        "last_check": str(health.get("last_check") or ""),
        "generation": s.get("generation"),
        "standby": str(standby.get("provider") or "") if standby else "",
        "providers": [
            {
                "name": str(p.get("name") or ""),
                "type": str(p.get("type") or ""),
                "state": str(p.get("state") or "unknown"),
                "cls": css_class(p.get("state")),
                "reason": str(p.get("reason") or ""),
            }
            for p in s.get("providers") or []
            if isinstance(p, dict)
        ],
        "dns": _dns_rows(s),
        "recovery": _recovery(s, now),
        "certificate": _certificate(s, now),
        "transfers": _transfers(s),
    }


def _transfers(s: Doc) -> list[Doc]:
    """The backups and restores under way (``transfers``, only while one runs)."""
    from failover.data.meter import describe

    rows = []
    for t in s.get("transfers") or []:
        done = _count(t.get("bytes")) if isinstance(t, dict) else None
        if done is None:
            continue
        total, estimated = _count(t.get("total_bytes")), bool(t.get("total_estimated"))
        rate = _count(t.get("bytes_per_s"))
        rows.append(
            {
                "kind": str(t.get("kind") or ""),
                "text": describe(done, total, estimated, rate),
                "done": done,
                "total": total if total and not estimated else None,
            }
        )
    return rows


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# --------------------------------------------------------------------------- timelines


def _step_rows(steps: list[Doc], start: float | None, now: float) -> tuple[list[Doc], float]:
    """Each step laid after the one before (the journal's times are whole seconds, the
    durations are not), and the total the bars are scaled to."""
    rows, end = [], 0.0
    for step in steps:
        began = epoch(step.get("started_at"))
        took = step.get("duration_s")
        if not isinstance(took, int | float):
            took = now - began if step.get("status") == "in_progress" and began else None
        offset = end
        if began is not None and start is not None:
            offset = max(end, began - start)
        if took is not None:
            end = offset + max(0.0, float(took))
        rows.append({"step": step, "offset": offset, "took": took})
    return rows, end


def timeline(event: Doc, now: float | None = None) -> list[Doc]:
    """One bar a step (x and width in percent of the run) and one row a failed candidate."""
    now = time.time() if now is None else now
    steps = [s for s in event.get("steps") or [] if isinstance(s, dict)]
    laid, end = _step_rows(steps, epoch(event.get("started_at")), now)
    total = max(end, float(event.get("duration_s") or 0.0), 1e-6)
    rows = []
    for row in laid:
        step, took = row["step"], row["took"]
        status = str(step.get("status") or "pending")
        x = min(99.4, 100 * row["offset"] / total)  # a bar at the end is still drawn
        w = min(max(0.6, 100 * float(took) / total), 100 - x) if took is not None else 0.0
        rows.append(
            {
                "label": str(step.get("name") or ""),
                "status": status,
                "cls": css_class(status),
                "x": round(x, 2),
                "w": round(w, 2),
                "took": span(took),
                "detail": str(step.get("detail") or ""),
                "candidate": False,
            }
        )
    # The candidates that failed came before the provision that worked: drawn there.
    at = next((i for i, r in enumerate(rows) if r["label"] == "provision"), len(rows))
    for n, attempt in enumerate(_attempts(event), start=1):
        rows.insert(
            at + n - 1,
            {
                "label": f"attempt {n}: {attempt.get('provider')}",
                "status": "failed",
                "cls": "bad",
                "x": 0.0,
                "w": 0.0,
                "took": "",
                "detail": f"{attempt.get('step')}: {attempt.get('result')}",
                "candidate": True,
            },
        )
    return rows


def _in_flight(rows: list[Doc], moving: str) -> list[Doc]:
    for row in rows:
        if moving and row["status"] == "in_progress" and not row["candidate"]:
            row["detail"] = f"{row['detail']}; {moving}" if row["detail"] else moving
    return rows


def _attempts(event: Doc) -> list[Doc]:
    found = event.get("attempts")
    if found is None:
        found = (event.get("data") or {}).get("attempts")
    return [a for a in found or [] if isinstance(a, dict)]


def event_view(event: Doc, now: float | None = None, moving: str = "") -> Doc:
    """``moving``: the service's backup or restore under way, shown on the run's step in
    flight."""
    origin, to = _part(event, "from"), _part(event, "to")
    attempts = _attempts(event)
    tried = [
        {
            "provider": str(a.get("provider")),
            "status": "failed",
            "cls": "bad",
            "at": str(a.get("step")),
        }
        for a in attempts
    ]
    target = to.get("provider") or (event.get("data") or {}).get("to")
    status = str(event.get("status") or "")
    last_failed = bool(attempts) and attempts[-1].get("provider") == target
    if target and not (status == "failed" and last_failed):
        tried.append(
            {"provider": str(target), "status": status, "cls": css_class(status), "at": ""}
        )
    return {
        "id": event.get("id"),
        "service": str(event.get("service") or ""),
        "kind": str(event.get("kind") or ""),
        "status": str(event.get("status") or ""),
        "cls": css_class(event.get("status")),
        "reason": str(event.get("reason") or ""),
        "from": str(origin.get("provider") or ""),
        "to": str(target or ""),
        "started_at": str(event.get("started_at") or ""),
        "took": span(event.get("duration_s")),
        "rows": _in_flight(timeline(event, now), moving if status == "in_progress" else ""),
        "tried": tried if attempts else [],
    }


# --------------------------------------------------------------------------- rendering


@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import Environment
    from jinja2 import FileSystemLoader
    from jinja2 import StrictUndefined

    from failover.render import templates_dir

    return Environment(
        loader=FileSystemLoader(str(templates_dir())),
        autoescape=True,  # names, reasons and provider messages are untrusted
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _stamp(now: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))


def render_page(doc: Doc, events: list[Doc], title: str, now: float | None = None) -> str:
    """The status page of ``doc`` (``status --json``) and ``events`` (``history``)."""
    from failover.redact import redact_doc

    now = time.time() if now is None else now
    doc, events = redact_doc(doc), redact_doc(events)
    services = [service_view(s, now) for s in doc.get("services") or []]
    moving = {
        s["name"]: "; ".join(f"{t['kind']} {t['text']}" for t in s["transfers"]) for s in services
    }
    views = [event_view(e, now, moving.get(str(e.get("service") or ""), "")) for e in events]
    return str(
        _environment()
        .get_template("status.html.j2")
        .render(
            title=title,
            generated=_stamp(now),
            services=services,
            events=views,
            down=sum(1 for s in services if s["state"] != "up"),
        )
    )


def render_drill(doc: Doc, event: Doc | None, now: float | None = None) -> str:
    """One rehearsal (``drill --json``) with its timeline, recovery point and restore time."""
    from failover.redact import redact_doc

    now = time.time() if now is None else now
    doc = redact_doc(doc)
    journaled = redact_doc(event or {})
    drawn = {**journaled, **doc, "attempts": _attempts(journaled), "to": journaled.get("to")}
    if not drawn["to"]:
        drawn["to"] = {"provider": doc.get("to")}
    restore = doc.get("restore") if isinstance(doc.get("restore"), dict) else None
    return str(
        _environment()
        .get_template("status_drill.html.j2")
        .render(
            title=f"Drill of {doc.get('service')} on {doc.get('to')}",
            generated=_stamp(now),
            event=event_view(drawn, now),
            message=str(doc.get("message") or ""),
            rpo=span(restore.get("age_s")) if restore else "",
            restore_time=span(restore.get("restore_s")) if restore else "",
            backup=str(restore.get("backup") or "") if restore else "",
            store=str(restore.get("store") or "") if restore else "",
        )
    )


# --------------------------------------------------------------------------- documents


def status_document(engine: Engine, names: list[str], *, refresh: bool) -> Doc:
    """``status --json``: the services, and the watchers when there are several."""
    doc: Doc = {"services": engine.status(names, refresh=refresh)}
    watchers = engine.watchers.document()
    if watchers is not None:
        doc["watchers"] = watchers
    return doc


def recent_events(engine: Engine, names: list[str], limit: int = EVENTS_SHOWN) -> list[Doc]:
    """The last runs of ``names``, newest first, with their steps and failed candidates."""
    events: list[Doc] = []
    for name in names:
        events.extend(engine.history(name, limit))
    events.sort(key=lambda e: int(e.get("id") or 0), reverse=True)
    return [e for e in events if e.get("kind") in EVENT_KINDS][:limit]


def page_of(engine: Engine, names: list[str], *, refresh: bool) -> tuple[str, Doc]:
    """The page and the ``status --json`` document it draws."""
    doc = status_document(engine, names, refresh=refresh)
    live = engine.publisher.transfers()
    for service in doc["services"]:
        if service.get("service") in live:
            service["transfers"] = [t.to_dict() for t in live[service["service"]]]
    page = engine.config.status_page
    title = page.title if page else "Service status"
    return render_page(doc, recent_events(engine, names), title), doc


def write(path: Path | None, text: str) -> None:
    """``text`` to ``path``, or stdout for None or ``-``."""
    if path is None or str(path) == "-":
        from failover.clikit import out

        out(text.rstrip("\n"))
        return
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        from failover.clikit import Exit
        from failover.exitcodes import ExitCode

        raise Exit(ExitCode.FAILED, f"{path}: cannot write: {exc.strerror or exc}") from None


def status_html(conf: Config, names: list[str], path: Path | None) -> int:
    """``failover status --html [FILE]``."""
    from failover.clikit import open_engine

    with open_engine(conf, quiet=True) as engine:
        page, _doc = page_of(engine, names, refresh=True)
    write(path, page)
    return 0


def drill_html(doc: Doc, event: Doc | None, path: Path) -> None:
    """``failover drill --html FILE``."""
    write(path, render_drill(doc, event))


def optional_file(args: list[str]) -> list[str]:
    """``status --html`` without FILE means stdout: Typer has no option with an optional
    value, so the missing ``-`` is put in before it parses."""
    if "status" not in args or "--html" not in args:
        return args
    at = args.index("--html") + 1
    if at == len(args) or (args[at].startswith("-") and args[at] != "-"):
        return [*args[:at], "-", *args[at:]]
    return args
