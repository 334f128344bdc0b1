"""The bodies of ``init``, ``validate`` and ``schema``: writing and checking a config;
``cli.py`` declares them and calls these (imported when the command runs)."""

from __future__ import annotations

import re
from pathlib import Path

from failover.clikit import Exit
from failover.clikit import emit_json
from failover.clikit import load
from failover.clikit import out
from failover.exitcodes import ExitCode


def init_command(path: Path, provider: str, *, force: bool) -> int:
    from failover.starter import starter

    if provider not in ("local", "aws", "gcp", "azure", "ssh"):
        raise Exit(
            ExitCode.USAGE,
            f"--provider must be local, aws, gcp, azure or ssh, not {provider!r}",
        )
    if path.exists() and not force:
        raise Exit(ExitCode.USAGE, f"{path} exists; pass --force to overwrite it")
    text = starter(provider)
    path.write_text(text)
    # A cloud starter names its image, project or key as ${VARS}: `validate` before they
    # are set only says they are not. And `deploy` alone reads ./failover.yaml.
    needed = sorted(set(re.findall(r"(?<!\$)\$\{(\w+)\}", text)))
    first = f"set {' and '.join(needed)} (see the comments in {path}), " if needed else ""
    flag = f" -c {path}"
    out(f"wrote {path}; next: {first}`failover validate{flag}`, then `failover deploy{flag}`")
    return ExitCode.SUCCESS


def validate_command(config: Path | None, state_dir: Path | None, *, as_json: bool) -> int:
    from failover.config import ConfigError
    from failover.render import TemplateError
    from failover.render import host_spec

    try:
        conf = load(config, state_dir)
        for name, svc in conf.services.items():
            # The runner's own function, so what passes here is what a move boots.
            try:
                host_spec(name, svc, generation=1, provider="check", stores=conf.stores)
            except TemplateError as exc:
                raise ConfigError([f"services.{name}.run: {exc}"]) from None
    except ConfigError:
        # `run` prints the problems on stderr and, with --json, the error document every
        # command prints ({"ok": false, "error", "problems", "exit_code"}).
        raise
    if as_json:
        emit_json(
            {
                "ok": True,
                "path": str(conf.path),
                "services": list(conf.services),
                "providers": [p["name"] for p in conf.providers],
                "dns": conf.dns_settings().type,
                "notify": [t.name or f"{t.type}-{i}" for i, t in enumerate(conf.notify)],
            }
        )
        return ExitCode.SUCCESS
    out(
        f"{conf.path}: valid ({len(conf.services)} service(s), "
        f"{len(conf.providers)} provider(s), dns {conf.dns_settings().type})"
    )
    return ExitCode.SUCCESS


def schema_command() -> int:
    from failover.config import json_schema

    emit_json(json_schema())
    return ExitCode.SUCCESS
