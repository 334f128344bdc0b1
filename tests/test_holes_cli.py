"""Issue 21, the CLI and configuration holes: what a new user meets with nothing but the
README, and what hostile input does to the commands."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from failover.starter import starter
from tests.helpers import ROOT
from tests.helpers import failover

PROVIDERS = ("local", "aws", "gcp", "azure", "ssh")

# --------------------------------------------------------------------------- item 3: schema


def _validator() -> jsonschema.protocols.Validator:
    # `jsonschema` comes with moto[server] (a test dependency): a real, independent
    # validator of the document `failover schema` prints, as an editor would use it.
    schema = json.loads(failover("schema", check=True).stdout)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)  # type: ignore[no-any-return]


def _problems(validator: jsonschema.protocols.Validator, doc: Any) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def _merged(base: Any, fragment: Any) -> Any:
    """A README fragment put into a whole file: mappings merge, anything else replaces."""
    if isinstance(base, dict) and isinstance(fragment, dict):
        return {**base, **{k: _merged(base.get(k), v) for k, v in fragment.items()}}
    return fragment


def _readme_examples() -> list[tuple[int, Any]]:
    text = (ROOT / "README.md").read_text()
    blocks = []
    for match in re.finditer(r"```yaml\n(.*?)```", text, re.S):
        line = text.count("\n", 0, match.start()) + 1
        blocks.append((line, yaml.safe_load(match.group(1))))
    return blocks


@pytest.mark.parametrize("provider", PROVIDERS)
def test_schema_accepts_what_init_writes(provider: str, tmp_path: Path) -> None:
    path = tmp_path / "failover.yaml"
    failover("init", "--provider", provider, str(path), check=True)
    doc = yaml.safe_load(path.read_text())
    assert _problems(_validator(), doc) == []


def test_schema_accepts_every_readme_example() -> None:
    validator = _validator()
    base = yaml.safe_load(starter("local"))
    examples = _readme_examples()
    assert len(examples) >= 8  # the test reads the README's examples, not nothing
    for line, doc in examples:
        assert isinstance(doc, dict), f"README.md:{line}: not a mapping"
        assert _problems(validator, _merged(base, doc)) == [], f"README.md:{line}"


def test_schema_reads_durations_and_env_references_as_the_loader_does() -> None:
    validator = _validator()
    base = yaml.safe_load(starter("local"))
    web = base["services"]["web"]
    for interval in (10, 2.5, "10s", "500ms", "1m", "${INTERVAL}"):
        web["health"]["interval"] = interval
        assert _problems(validator, base) == [], interval
    web["port"] = "${PORT}"
    assert _problems(validator, base) == []
    # ... and still refuses what the loader refuses.
    for interval in ("banana", "10 minutes", True, -1):
        web["health"]["interval"] = interval
        assert _problems(validator, base), interval
    web["health"]["interval"] = "10s"
    web["port"] = "eighty"
    assert _problems(validator, base)
