"""Every class of bad config gets exit 2 and a located message, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from failover.config import ConfigError
from failover.config import json_schema
from failover.config import parse
from tests.helpers import base_config
from tests.helpers import failover
from tests.helpers import write_config


def problems(data: object) -> list[str]:
    text = data if isinstance(data, str) else yaml.safe_dump(data)
    with pytest.raises(ConfigError) as info:
        parse(text, "failover.yaml")
    return info.value.problems


def mutate(path: str, value: object) -> dict[str, object]:
    data = base_config()
    node: dict[str, object] = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]  # type: ignore[assignment]
    node[keys[-1]] = value
    return data


def test_a_value_where_settings_belong_is_named_in_the_users_words() -> None:
    """pydantic said `input should be a valid dictionary or instance of HealthConfig`."""
    expected = "must be a mapping of settings (`key: value` lines), not"
    health = problems(mutate("services.web.health", 5))
    assert health == [f"services.web.health: {expected} a single value"]
    assert problems(mutate("services", ["web"])) == [f"services: {expected} a list"]


def test_a_dns_section_of_the_wrong_shape_is_named_at_its_path() -> None:
    """`dns: 5` said `dns.dict[str,any]: ...` and `dns.list[dict[str,any]]: ...`."""
    settings = "must be a mapping of settings (`type: ...`, `zone: ...`)"
    assert problems(mutate("dns", 5)) == [f"dns: {settings}, or a list of them"]
    local = {"type": "local", "zone": "example.test"}
    assert problems(mutate("dns", [local, "cf"])) == [f"dns[1]: {settings}"]


def test_a_store_s_problems_are_at_its_own_path_not_under_its_type() -> None:
    """`stores[0].dir.path: required` (the type in the path) and pydantic's words for a
    bad or missing `type` ("unable to extract tag using discriminator 'type'")."""
    data = base_config()
    data["stores"] = [{"name": "o", "type": "dir"}, {"name": "p", "type": "ftp"}, {"name": "q"}]
    kinds = "required, one of: dir, s3, gcs, azureblob"
    assert problems(data) == [
        "stores[0].path: required",
        f"stores[1].type: {kinds}",
        f"stores[2].type: {kinds}",
    ]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("services.web.health.fall", 0, "services.web.health.fall: must be >= 1"),
        ("services.web.health.rise", "two", "services.web.health.rise: "),
        ("services.web.health.interval", "soon", "services.web.health.interval: 'soon' is not"),
        ("services.web.health.timeout", "5s", "services.web.health.timeout: must not exceed"),
        ("services.web.port", 70000, "services.web.port: must be <= 65535"),
        ("services.web.domain", "not a domain!", "services.web.domain: 'not a domain!'"),
        (
            "services.web.policy.providers",
            ["alpha", "zeta"],
            "services.web.policy.providers[1]: no provider named 'zeta'",
        ),
        ("services.web.policy.ready_timeout", "-1s", "services.web.policy.ready_timeout:"),
        (
            "services.web.health.http",
            {"path": "/", "expect_status": [999]},
            "services.web.health.http.expect_status: 999 is not an HTTP status",
        ),
        (
            "services.web.health.http",
            {"body": "(["},
            "services.web.health.http.body: not a valid regular expression",
        ),
        ("services.web.healht", {}, "services.web.healht: unknown field"),
        ("services.web.run", {}, "services.web.run.command: required"),
        ("version", 2, "version: must be 1"),
        ("dns", {"type": "bind", "zone": "x"}, "dns.type: unknown type 'bind'"),
        ("dns", {"type": "local"}, "dns.zone: required"),
        ("services", {}, "services: "),
        ("providers", [], "providers: "),
    ],
)
def test_located_messages(path: str, value: object, expected: str) -> None:
    found = problems(mutate(path, value))
    assert any(p.startswith(expected) for p in found), found


def test_provider_errors_are_located() -> None:
    data = base_config()
    data["providers"] = [
        {"name": "alpha", "type": "local"},
        {"name": "alpha", "type": "local"},
        {"name": "Bad Name", "type": "local"},
        {"name": "gamma", "type": "nowhere"},
        {"name": "delta", "type": "local", "colour": "red"},
        {"name": "eps"},
    ]
    found = problems(data)
    assert "providers[1].name: duplicate provider name 'alpha'" in found
    assert any(p.startswith("providers[2].name: required: lowercase") for p in found)
    assert any(p.startswith("providers[3].type: unknown type 'nowhere'") for p in found)
    assert any(p.startswith("providers[4].colour: unknown field") for p in found)
    assert any(p.startswith("providers[5].type: required") for p in found)


def test_yaml_syntax_error_has_its_line() -> None:
    found = problems("version: 1\nservices:\n  web: [\n")
    assert len(found) == 1 and found[0].startswith("failover.yaml:4:1: YAML syntax error")
    found = problems("version: 1\n  bad: indent\n")
    assert found[0].startswith("failover.yaml:2:")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text", "42"])
def test_not_a_mapping(text: str) -> None:
    assert problems(text)


def test_env_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_DOMAIN", "www.from-env.example.test")
    data = base_config(domain="${WEB_DOMAIN}")
    data["services"]["web"]["run"]["command"] = "echo $${NOT_EXPANDED} {port}"
    config = parse(yaml.safe_dump(data))
    assert config.services["web"].domain == "www.from-env.example.test"
    assert config.services["web"].run.command == "echo ${NOT_EXPANDED} {port}"
    monkeypatch.delenv("WEB_DOMAIN")
    assert problems(data) == ["services.web.domain: environment variable WEB_DOMAIN is not set"]


def test_durations_and_defaults() -> None:
    data = base_config(
        health={"interval": "1m", "timeout": "500ms"}, policy={"ready_timeout": "1d"}
    )
    config = parse(yaml.safe_dump(data))
    svc = config.services["web"]
    assert svc.health.interval == 60 and svc.health.timeout == 0.5
    assert svc.policy.ready_timeout == 86400  # `d` too: pgBackRest's full_every: 1d
    assert svc.health.http is not None  # an http probe is the default
    minimal = {
        "providers": [{"name": "a", "type": "local"}],
        "services": {"web": {"domain": "w.example.test", "port": 80, "run": {"command": "x"}}},
    }
    config = parse(yaml.safe_dump(minimal))
    web = config.services["web"]
    assert (web.health.fall, web.health.rise, web.policy.max_moves_per_hour) == (3, 2, 3)
    assert web.policy.ready_timeout == 600 and web.policy.auto_failover is True
    assert config.service_providers("web") == ["a"]
    assert config.dns_settings().type == "local"


def test_several_services() -> None:
    data = base_config()
    data["services"]["api"] = {**data["services"]["web"], "domain": "api.example.test"}
    config = parse(yaml.safe_dump(data, sort_keys=False))
    assert list(config.services) == ["web", "api"]


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    good = write_config(tmp_path, base_config())
    proc = failover("validate", config=good)
    assert proc.returncode == 0 and "valid" in proc.stdout
    bad = write_config(tmp_path, mutate("services.web.health.fall", 0), "bad.yaml")
    proc = failover("validate", config=bad)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "services.web.health.fall: must be >= 1"
    missing = failover("validate", config=tmp_path / "nope.yaml")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    # check uses UNKNOWN (3) for a bad config, as monitoring plugins do.
    assert failover("check", config=bad).returncode == 3
    for proc in (failover("status", config=bad), failover("deploy", config=bad)):
        assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_config_from_environment_variable(tmp_path: Path) -> None:
    path = write_config(tmp_path, base_config(), "elsewhere.yaml")
    proc = failover("validate", env={"FAILOVER_CONFIG": str(path)})
    assert proc.returncode == 0, proc.stderr


def test_init_writes_valid_starters(tmp_path: Path) -> None:
    for kind in ("local", "aws", "gcp"):
        path = tmp_path / f"{kind}.yaml"
        assert failover("init", "--provider", kind, str(path)).returncode == 0
        proc = failover("validate", config=path)
        if kind == "local":
            assert proc.returncode == 0, proc.stderr
        else:
            # Cloud starters validate once the provider module is installed.
            assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr
    again = failover("init", str(tmp_path / "local.yaml"))
    assert again.returncode == 2 and "--force" in again.stderr


def test_schema_is_json_schema() -> None:
    proc = failover("schema")
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    assert schema["title"] == "failover.yaml"
    assert "services" in schema["properties"]
    assert json_schema()["properties"]["providers"]["items"]["anyOf"]
