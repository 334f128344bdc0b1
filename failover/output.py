"""What the commands show: the documents they print and the text for people.

Every function takes a document (the dicts the engine returns) and gives back text, so
the wording can be tested without the CLI. Multi-line renderers return a list of lines:
the CLI prints each one through :func:`failover.redact.redact` on its own, exactly as
it did when it printed them itself. Nothing here writes to a stream.

rich (and ElementTree) are imported inside the functions that use them: ``cli.py``
imports this module at start-up, which must stay as cheap as ``failover --help``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any

from failover.exitcodes import CheckCode

if TYPE_CHECKING:
    from failover.engine import Outcome
    from failover.engine import ServiceCheck

Doc = dict[str, Any]

_COLOUR = {
    "up": "green",
    "down": "red",
    "unknown": "yellow",
    "available": "green",
    "blocked": "red",
}


# --------------------------------------------------------------------------- status


def _where(active: Doc | None) -> str:
    if not active:
        return "nowhere (not deployed)"
    return (
        f"{active['provider']} {active['address']}:{active['port']} "
        f"(host {active['host_id']}, since {active['since']})"
    )


def _standby(host: Doc) -> str:
    """The warm standby (``policy.standby: warm``): running, out of DNS."""
    return (
        f"{host['provider']} {host.get('address') or '(no address yet)'} (host "
        f"{host['host_id']}, warm for generation {host.get('generation')}, out of DNS)"
    )


def _last_event(event: Doc) -> str:
    return f"{event['kind']} {event['status']} {event['finished_at'] or ''}"


def _verdict(s: Doc) -> str:
    """The health word, and why it is ``unknown`` when that is only "no round yet": a
    service that a deploy just verified read as "unknown on alpha", which looks broken."""
    if not s["active"]:
        return "not deployed"
    state = str(s["health"]["state"])
    if state == "unknown" and not s["health"]["last_check"]:
        return f"{state} (no probe round since it went live; `failover check` runs one)"
    return state


def status_lines(doc: list[Doc]) -> list[str]:
    """``status`` when stdout is not a terminal: a few plain lines per service."""
    lines = []
    for s in doc:
        where = f" on {_where(s['active'])}" if s["active"] else ""
        lines.append(
            f"{s['service']} ({s['domain']}): {_verdict(s)}{where}, generation {s['generation']}"
        )
        dns = s["dns"]
        if dns and "values" in dns:
            lines.append(
                f"  dns: {dns['name']} {dns['type']} {', '.join(dns['values'])} ttl {dns['ttl']}"
            )
        elif dns:
            lines.append(f"  dns: {dns.get('error')}")
        else:
            lines.append("  dns: no record")
        if s["last_event"]:
            lines.append(f"  last: {_last_event(s['last_event'])}")
        if s.get("standby"):
            lines.append(f"  standby: {_standby(s['standby'])}")
        lines.append(
            "  providers: "
            + ", ".join(f"{p['name']} ({p['type']}) {p['state']}" for p in s["providers"])
        )
        if s.get("data") is not None:
            lines.append(f"  data: {data_summary(s['data'])}")
    return lines


def data_summary(data: Doc) -> str:
    """The last backup, its age and each store's state, on one line."""
    last = data["last_backup"]
    head = f"last backup {last['id']} ({last['age_s']:.0f}s old)" if last else "no backup yet"
    stores = ", ".join(
        f"{name} {'ok' if st['ok'] else 'failing: ' + st.get('error', '')}"
        for name, st in data["stores"].items()
    )
    return head + (f"; stores: {stores}" if stores else "")


def _status_rows(s: Doc) -> list[tuple[str, str]]:
    dns = s["dns"] or {}
    health = s["health"]
    rows = [
        ("lives on", _where(s["active"])),
        (
            "dns",
            f"{', '.join(dns['values'])} ttl {dns['ttl']}"
            if "values" in dns
            else str(dns.get("error", "no record")),
        ),
        (
            "health",
            f"{health['consecutive_failures']} failed / "
            f"{health['consecutive_successes']} good rounds; last "
            f"{health['last_check'] or 'never'}",
        ),
    ]
    if s["last_event"]:
        rows.append(("last", _last_event(s["last_event"])))
    if s.get("standby"):
        rows.append(("standby", _standby(s["standby"])))
    if s.get("data") is not None:
        rows.append(("data", data_summary(s["data"])))
    for p in s["providers"]:
        why = f" ({p['reason']})" if p.get("reason") else ""
        rows.append(
            (
                f"provider {p['name']}",
                f"{p['type']} [{_COLOUR.get(p['state'], '')}]{p['state']}[/]{why}",
            )
        )
    return rows


def status_table(doc: list[Doc], width: int) -> str:
    """``status`` on a terminal: one rich table per service, as terminal text."""
    import io

    from rich.console import Console
    from rich.table import Table

    # Rendered into a buffer so the text goes through the same redaction as every line.
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=width)
    for s in doc:
        state = s["health"]["state"]
        table = Table(
            title=f"{s['service']} ({s['domain']}): [{_COLOUR.get(state, '')}]{_verdict(s)}"
            f"[/] generation {s['generation']}",
            title_justify="left",
            show_header=False,
        )
        table.add_column("")
        table.add_column("")
        for label, value in _status_rows(s):
            table.add_row(label, value)
        console.print(table, markup=True)
    return buffer.getvalue()


# --------------------------------------------------------------------------- doctor


def _account_lines(head: str, part: Doc) -> list[str]:
    lines = [f"{head}: {part['state']}{' - ' + part['reason'] if part['reason'] else ''}"]
    lines += [f"  {'ok ' if c['ok'] else 'BAD'} {c['name']}: {c['detail']}" for c in part["checks"]]
    return lines


def doctor_lines(report: Doc) -> list[str]:
    """``doctor``: the state store, each provider, the DNS zone and each backup store
    with its checks, then the warnings."""
    lines = []
    if report.get("state"):
        lines += _account_lines(f"state {report['state']['name']}", report["state"])
    for p in report["providers"]:
        lines += _account_lines(f"{p['name']} ({p['type']})", p)
    d = report["dns"]
    lines += _account_lines(f"dns {d['type']} zone {d['zone']}", d)
    for st in report.get("stores", []):
        lines += _account_lines(f"store {st['name']} ({st['type']})", st)
    for c in report.get("canaries", []):
        mark = "ok" if c.get("ok") else "FAILED"
        lines.append(f"canary {c.get('service')} {c.get('canary')}: {mark} {c.get('detail', '')}")
    lines += [f"warning: {w}" for w in report["warnings"]]
    return lines


# --------------------------------------------------------------------------- runs

# Steps slow enough that a person at a terminal wants to see them start.
_LONG_STEPS = ("provision", "wait_ready", "restore", "verify")


def progress_line(step: str, status: str, detail: str) -> str | None:
    """A run's progress on a terminal: each step's end, and the start of the long ones."""
    if status == "in_progress" and step not in _LONG_STEPS:
        return None
    mark = {"in_progress": "..", "succeeded": "ok", "failed": "FAILED"}.get(status, status)
    return f"  {step:<11} {mark}{'  ' + detail if detail else ''}"


def public_event(event: Doc | None) -> Doc | None:
    """A journal event without its internal ``data`` (the run's resumable state)."""
    if event is None:
        return None
    return {k: v for k, v in event.items() if k != "data"}


def outcome_doc(outcome: Outcome) -> Doc:
    """``deploy --json`` and ``move --json``."""
    return {
        "service": outcome.service,
        "kind": outcome.kind,
        "status": outcome.status,
        "message": outcome.message,
        "event": public_event(outcome.event),
    }


def outcome_line(outcome: Outcome) -> str:
    """The one line a run ends with: its message, or what failed (for stderr)."""
    if outcome.ok:
        return outcome.message
    return f"{outcome.kind} {outcome.status}: {outcome.message}"


def plan_lines(plan: Doc) -> list[str]:
    """``plan`` (and ``move`` before it asks): where from, where to, each step."""
    origin = plan["from"]
    lines = [
        f"{plan['kind']} {plan['service']}: "
        f"{origin['provider'] + ' (' + origin['address'] + ')' if origin else 'not deployed'}"
        f" -> {plan['to'] or 'NOWHERE'}"
    ]
    lines += [f"  {step['name']:<11} {step['does']}" for step in plan["steps"]]
    if not plan["possible"]:
        lines.append(
            "not possible now: "
            + "; ".join(f"{c['provider']}: {c['reason']}" for c in plan["candidates"])
        )
    return lines


def history_lines(events: list[Doc]) -> list[str]:
    """``history``: one line per event, then its attempts and steps."""
    if not events:
        return ["no events yet"]
    lines = []
    for e in events:
        frm = e["from"]["provider"] if e["from"] else "-"
        to = e["to"]["provider"] if e["to"] else "-"
        lines.append(
            f"#{e['id']} {e['started_at']} {e['service']} {e['kind']} {e['status']} "
            f"{frm} -> {to} ({e['duration_s'] if e['duration_s'] is not None else '?'}s)"
            f" {e['reason'] or ''}"
        )
        lines += [f"    tried {a['provider']}: {a['result']}" for a in e.get("attempts", [])]
        lines += [f"    {s['name']:<11} {s['status']:<11} {s['detail']}" for s in e["steps"]]
    return lines


# --------------------------------------------------------------------------- data


def backup_lines(doc: Doc) -> list[str]:
    """``backup``: the backup taken and each store's answer."""
    lines = [
        f"{doc['service']}: backup {doc['id']} taken at {doc['taken_at']} "
        f"({doc['bytes']} bytes, sha256 {doc['sha256'][:12]})"
    ]
    lines += [f"  {name:<16} {result}" for name, result in doc["stores"].items()]
    return lines


def backups_lines(rows: list[Doc]) -> list[str]:
    """``backups``: one line per complete backup, newest first."""
    if not rows:
        return ["no backups yet (`failover backup` takes one)"]
    return [
        f"{r['service']:<12} {r['id']:<31} {r['taken_at']}  {r['bytes']:>12} bytes  "
        + ", ".join(r["stores"])
        for r in rows
    ]


# --------------------------------------------------------------------------- drill


def drill_doc(outcome: Outcome) -> Doc:
    """``drill --json``, and what the text and the JUnit report are made from."""
    event = outcome.event or {}
    target = event.get("to") or {}
    return {
        "service": outcome.service,
        "kind": "drill",
        "to": target.get("provider") or (event.get("data") or {}).get("to"),
        "status": "succeeded" if outcome.ok else "failed",
        "message": outcome.message,
        "started_at": event.get("started_at"),
        "finished_at": event.get("finished_at"),
        "duration_s": event.get("duration_s"),
        # The restored backup: its age is the recovery point, restore_s the restore time.
        "restore": (event.get("data") or {}).get("restore"),
        "steps": _every_drill_step(event.get("steps", [])),
    }


def _every_drill_step(journaled: list[Doc]) -> list[Doc]:
    """Each step of a drill, in order; the ones a failure left unrun as ``skipped``, so
    a CI report always shows the whole rehearsal."""
    from failover.engine.journal import DRILL_STEPS

    done = {
        s["name"]: {
            "name": s["name"],
            "status": s["status"],
            "duration_s": s["duration_s"],
            "detail": s["detail"],
        }
        for s in journaled
    }
    skipped = {"status": "skipped", "duration_s": None, "detail": "not run"}
    return [done.get(name, {"name": name, **skipped}) for name in DRILL_STEPS]


def drill_lines(doc: Doc, to: str) -> list[str]:
    """``drill``: the verdict and each step's time. ``to`` is the provider asked for,
    named even when the drill failed before the journal recorded one."""
    lines = [f"drill {doc['service']} -> {to}: {doc['status']} in {doc['duration_s']}s"]
    if doc.get("restore"):
        r = doc["restore"]
        lines.append(
            f"  recovery point {r['age_s']}s (backup {r['backup']} from {r['store']}); "
            f"restore {r['restore_s']}s"
        )
    lines += [
        f"  {step['name']:<11} {step['status']:<10} {step['duration_s'] or 0:>7.2f}s"
        f"  {step['detail']}"
        for step in doc["steps"]
    ]
    return lines


def junit_xml(doc: Doc) -> str:
    """One test suite per drill, one test case per step (CI systems render these)."""
    from xml.etree import ElementTree as ET

    steps = doc["steps"]
    failures = [s for s in steps if s["status"] == "failed"]
    suite = ET.Element(
        "testsuite",
        name=f"failover drill {doc['service']} -> {doc['to']}",
        tests=str(len(steps)),
        failures=str(len(failures)),
        errors="0",
        time=f"{doc['duration_s'] or 0:.3f}",
        timestamp=doc["started_at"] or "",
    )
    for step in steps:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"drill.{doc['service']}.{doc['to']}",
            name=step["name"],
            time=f"{step['duration_s'] or 0:.3f}",
        )
        if step["status"] == "failed":
            failure = ET.SubElement(case, "failure", message=step["detail"][:200])
            failure.text = step["detail"]
        elif step["status"] not in ("succeeded",):
            ET.SubElement(case, "skipped", message=step["status"])
        ET.SubElement(case, "system-out").text = step["detail"]
    if not steps:
        case = ET.SubElement(suite, "testcase", classname="drill", name="drill")
        ET.SubElement(case, "failure", message=doc["message"]).text = doc["message"]
    if doc.get("restore"):
        props = ET.SubElement(suite, "properties")
        for key in ("backup", "store", "age_s", "restore_s", "bytes"):
            value = str(doc["restore"].get(key))
            ET.SubElement(props, "property", name=f"restore.{key}", value=value)
        # JUnit wants properties first in the suite.
        suite.remove(props)
        suite.insert(0, props)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --------------------------------------------------------------------------- check


def worst(codes: Iterable[int]) -> CheckCode:
    """The exit code of a ``check`` of several services: the most severe of theirs."""
    seen = set(codes)
    # UNKNOWN ranks below CRITICAL but above WARNING, as Nagios orders severity.
    for code in (CheckCode.CRITICAL, CheckCode.UNKNOWN, CheckCode.WARNING):
        if code in seen:
            return code
    return CheckCode.OK


def check_doc(results: list[ServiceCheck], code: int) -> Doc:
    """``check --json``."""
    return {"services": [r.to_dict() for r in results], "exit_code": int(code)}


def nagios_line(results: list[ServiceCheck], code: int) -> str:
    """``check``: the one line a monitoring plugin prints, with performance data."""
    text = "; ".join(r.message for r in results)
    perf = " ".join(
        f"{r.service + '_' if len(results) > 1 else ''}latency={_latency(r)}"
        for r in results
        if r.probes
    )
    return f"FAILOVER {CheckCode(code).name} - {text}" + (f" | {perf}" if perf else "")


def _latency(result: ServiceCheck) -> str:
    # A failed probe has no latency to graph: "U" is the plugin convention for unknown.
    if result.latency is None or not all(p.ok for p in result.probes):
        return "U"
    return f"{result.latency:.3f}s"


def unknown_line(message: str) -> str:
    """``check``'s line when it could not run its round at all."""
    return f"FAILOVER UNKNOWN - {' '.join(message.split())}"
