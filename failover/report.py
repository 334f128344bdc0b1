"""Drill reports: a JSON document and a JUnit XML file for CI."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from failover.engine import Outcome


def drill_doc(outcome: Outcome) -> dict[str, Any]:
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
        "steps": [
            {
                "name": s["name"],
                "status": s["status"],
                "duration_s": s["duration_s"],
                "detail": s["detail"],
            }
            for s in event.get("steps", [])
        ],
    }


def junit_xml(doc: dict[str, Any]) -> str:
    """One test suite per drill, one test case per step (CI systems render these)."""
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
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
