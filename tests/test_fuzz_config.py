"""Bad input everywhere: hypothesis-generated YAML into the config parser and ``validate``.

Whatever the file holds (random structures, wrong types, huge numbers, unicode, deep
nesting, ``${ENV}`` references, alias bombs), :func:`failover.config.parse` either returns
a :class:`Config` or raises :class:`ConfigError` with one ``path: message`` line per
problem; ``failover validate`` exits 0 or 2 and never prints a traceback.
"""

from __future__ import annotations

import copy
import math
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from failover.config import Config
from failover.config import ConfigError
from failover.config import parse
from tests.helpers import FAILOVER
from tests.helpers import base_config
from tests.helpers import env_for

pytestmark = pytest.mark.timeout(300)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Text YAML can carry (no lone surrogates: no YAML emitter can write them).
TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cs",)),
    max_size=40,
)
SPICY_TEXT = st.one_of(
    TEXT,
    st.sampled_from(
        [
            "",
            "${HOME}",
            "${FAILOVER_FUZZ_UNSET_VARIABLE}",
            "$${LITERAL}",
            "${",
            "{port}",
            "500ms",
            "1e400s",
            "99999999999999999999h",
            "-1s",
            "nan",
            "inf",
            "local",
            "aws",
            "alpha",
            "www.example.test",
            "/",
            "((",
            "\u202e\u0000",
            "ünïcødé-名前-🚀",
            "A" * 5000,
        ]
    ),
)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([0, -1, 1, 65535, 65536, 2**31, 2**63, 10**100, -(10**100)]),
    st.floats(allow_nan=True, allow_infinity=True),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, SPICY_TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(SPICY_TEXT, st.integers(), st.booleans()), children, max_size=5),
    ),
    max_leaves=30,
)

KEYS = [
    "version",
    "state",
    "dns",
    "providers",
    "services",
    "type",
    "zone",
    "ttl",
    "name",
    "domain",
    "port",
    "record_type",
    "run",
    "command",
    "setup",
    "restore",
    "env",
    "health",
    "interval",
    "timeout",
    "fall",
    "rise",
    "http",
    "tcp",
    "tls",
    "dns",
    "canary",
    "path",
    "expect_status",
    "body",
    "policy",
    "auto_failover",
    "ready_timeout",
    "max_moves_per_hour",
    "fence",
    "lease_ttl",
    "backend",
    "network",
]


def assert_parses_or_config_error(text: str) -> Config | None:
    try:
        return parse(text, "fuzz.yaml")
    except ConfigError as exc:
        assert exc.problems, "a ConfigError without problems"
        for problem in exc.problems:
            assert isinstance(problem, str) and problem.strip(), exc.problems
            assert "Traceback" not in problem
            assert ": " in problem, problem  # "path: message"
        return None


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def good_config() -> dict[str, Any]:
    data = base_config(
        health={"http": {"path": "/", "expect_status": [200]}, "canary": "127.0.0.1:9"},
        policy={"providers": ["alpha", "beta"], "fence": "stop"},
    )
    data["state"] = {"backend": "sqlite", "lease_ttl": "30s"}
    data["services"]["web"]["run"].update({"setup": ["true"], "restore": [], "env": {"A": "b"}})
    return data


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.extend(paths(value, (*prefix, index)))
    return out


def apply(data: dict[str, Any], path: tuple[Any, ...], op: str, value: Any, key: str) -> Any:
    if not path:
        return value if op == "replace" else data
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if op == "replace":
        parent[last] = value
    elif op == "delete":
        del parent[last]
    elif op == "add" and isinstance(parent[last], dict):
        parent[last][key] = value
    elif op == "add" and isinstance(parent[last], list):
        parent[last].append(value)
    return data


# --------------------------------------------------------------------------- in-process


def test_the_fuzzed_base_config_is_valid() -> None:
    assert isinstance(parse(dump(good_config())), Config)


@FUZZ
@given(VALUES)
def test_random_documents(doc: Any) -> None:
    assert_parses_or_config_error(dump(doc))


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
def test_random_top_level_mappings(doc: dict[str, Any]) -> None:
    assert_parses_or_config_error(dump(doc))


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10_000),
            st.sampled_from(["replace", "replace", "delete", "add"]),
            VALUES,
            st.sampled_from([*KEYS, "unknown_field", "ünï"]),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_valid_configs(mutations: list[tuple[int, str, Any, str]]) -> None:
    data: Any = good_config()
    for index, op, value, key in mutations:
        if not isinstance(data, dict):
            break
        every = paths(data)
        data = apply(data, every[index % len(every)], op, copy.deepcopy(value), key)
    config = assert_parses_or_config_error(dump(data))
    if config is not None:
        # What the engine asks of a valid config must work too.
        config.provider_settings()
        config.dns_settings()
        # Durations the watcher sleeps on and adds to the clock stay usable as such.
        assert 0 < config.state.lease_ttl < threading.TIMEOUT_MAX
        for name, service in config.services.items():
            config.service_providers(name)
            assert 0 < service.health.interval < threading.TIMEOUT_MAX
            assert math.isfinite(service.health.interval)
            assert service.health.timeout <= service.health.interval
            time.gmtime(time.time() + service.policy.ready_timeout)


@FUZZ
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    assert_parses_or_config_error(text)


@FUZZ
@given(st.lists(st.sampled_from(list("{}[]:,-&*!|>'\"#%@` \n\tab1.?")), max_size=120))
def test_yaml_punctuation_soup(chars: list[str]) -> None:
    assert_parses_or_config_error("".join(chars))


# Block indentation grows quadratically with depth: 5000 levels are enough there.
NESTING = [
    (depth, style)
    for style in ("flow_list", "flow_map", "block_map")
    for depth in (10, 100, 300, 1000, 5000, 50_000)
    if not (style == "block_map" and depth > 5000)
]


@pytest.mark.parametrize(("depth", "style"), NESTING)
def test_deep_nesting(depth: int, style: str) -> None:
    if style == "flow_list":
        text = "services: " + "[" * depth + "]" * depth + "\n"
    elif style == "flow_map":
        text = "services: " + "{a: " * depth + "1" + "}" * depth + "\n"
    else:
        text = "services:\n" + "".join(f"{' ' * (i + 1)}k{i}:\n" for i in range(depth))
        text += " " * (depth + 1) + "v\n"
    assert assert_parses_or_config_error(text) is None


@pytest.mark.parametrize("levels", [1, 3, 5, 9, 20])
def test_alias_bombs_are_refused_quickly(levels: int) -> None:
    """'Billion laughs': each level references the previous one ten times."""
    lines = ['x0: &x0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]")
    data = good_config()
    text = "\n".join(lines) + "\n" + dump(data)
    with pytest.raises(ConfigError) as caught:
        parse(text)
    if levels >= 5:
        assert "too large" in str(caught.value)
    else:
        assert "x0: unknown field" in str(caught.value)


def test_bomb_inside_a_free_form_field_is_refused() -> None:
    """``run.env`` and provider sections take free-form values; the bomb sits there."""
    text = 'x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for i in range(1, 8):
        text += f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]\n"
    data = good_config()
    data["dns"]["extra"] = "PLACEHOLDER"
    text = dump(data).replace("PLACEHOLDER", "*x7").replace("dns:", text + "dns:", 1)
    with pytest.raises(ConfigError, match="too large"):
        parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "services: &s {web: *s}\n",
        "a: &a [*a]\nversion: 1\n",
        "providers: &p [{name: alpha, type: local, more: *p}]\n",
    ],
)
def test_recursive_aliases(text: str) -> None:
    assert assert_parses_or_config_error(text) is None


@pytest.mark.parametrize(
    "value",
    [10**100, -(10**100), 2**63, 1e308, float("inf"), float("nan"), "1e400s", "9" * 400 + "s"],
)
@pytest.mark.parametrize(
    "where",
    [
        ("services", "web", "port"),
        ("services", "web", "health", "fall"),
        ("services", "web", "health", "interval"),
        ("services", "web", "policy", "ready_timeout"),
        ("services", "web", "policy", "max_moves_per_hour"),
        ("dns", "ttl"),
        ("state", "lease_ttl"),
        ("version",),
    ],
)
def test_huge_numbers(value: Any, where: tuple[str, ...]) -> None:
    data = good_config()
    apply(data, where, "replace", value, "")
    assert_parses_or_config_error(dump(data))


@pytest.mark.parametrize(
    "where",
    [
        ("services", "web", "health", "interval"),
        ("services", "web", "policy", "ready_timeout"),
        ("state", "lease_ttl"),
    ],
)
def test_durations_the_watcher_sleeps_on_are_bounded(where: tuple[str, ...]) -> None:
    """1e10 s once passed validation, then ended `watch` with an OverflowError."""
    data = good_config()
    apply(data, where, "replace", 1e10, "")
    with pytest.raises(ConfigError, match=r"must be <= 86400"):
        parse(dump(data))


# --------------------------------------------------------------------------- the CLI

CLI_CASES: list[tuple[str, str | bytes]] = [
    ("valid", dump(good_config())),
    ("empty", ""),
    ("a list", "- 1\n- 2\n"),
    ("wrong types", dump({**good_config(), "providers": {"alpha": 1}, "services": [1, 2]})),
    ("huge port", dump(apply(good_config(), ("services", "web", "port"), "replace", 10**50, ""))),
    ("unset env", dump(good_config()).replace("www.example.test", "${FAILOVER_FUZZ_UNSET}")),
    ("deep nesting", "services: " + "[" * 100_000 + "]" * 100_000 + "\n"),
    (
        "alias bomb",
        "\n".join(
            ['x0: &x0 ["lol"]']
            + [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]" for i in range(1, 12)]
        )
        + "\n",
    ),
    ("recursive alias", "services: &s {web: *s}\n"),
    ("not utf-8", b"version: 1\nservices: \xff\xfe\x00garbage\n"),
    ("control characters", "version: 1\n\x07\x1b[31mservices: {}\n"),
    ("unicode keys", dump({**good_config(), "sérvices": {"wéb": {}}})),
]


@pytest.mark.parametrize("name, text", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_validate_command(tmp_path: Path, name: str, text: str | bytes) -> None:
    path = tmp_path / "failover.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [FAILOVER, "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        env=env_for(),
        timeout=60,
    )
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output and "internal error" not in output, output
    assert proc.returncode == (0 if name == "valid" else 2), output
    if proc.returncode == 2:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert lines and all(": " in line for line in lines), proc.stderr


@settings(max_examples=8, deadline=None, derandomize=True, database=None)
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=5))
def test_validate_command_on_generated_documents(doc: dict[str, Any]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "failover.yaml"
        path.write_text(dump(doc), encoding="utf-8")
        proc = subprocess.run(
            [FAILOVER, "validate", "-c", str(path)],
            capture_output=True,
            text=True,
            env=env_for(),
            timeout=60,
        )
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output and "internal error" not in output, output
    assert proc.returncode in (0, 2), output
