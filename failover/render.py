"""Sandboxed rendering of the cloud-init templates that boot a host running the service.

Templates are rendered with Jinja2's ``SandboxedEnvironment`` and ``StrictUndefined``: a
template cannot reach Python internals, and a misspelt variable is an error, not an
empty string on a machine nobody can log in to.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from providers.base import HostSpec

DEFAULT_TEMPLATE = "cloud-init/command.yaml.j2"
_PLACEHOLDER = re.compile(r"\{(port|address|host_id|service|generation|python)\}")


class TemplateError(Exception):
    pass


def templates_dir() -> Path:
    """``templates/`` of a checkout, or ``failover/templates`` inside an installed wheel."""
    packaged = resources.files("failover") / "templates"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "templates"


def _systemd_quote(value: str) -> str:
    # systemd unit files take C-style double-quoted strings; % starts a specifier.
    return json.dumps(str(value)).replace("%", "%%")


@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(templates_dir())),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["systemd_quote"] = _systemd_quote
    return env


def _fill(command: str, spec: HostSpec) -> str:
    # On a booted image the address is only known on the host itself.
    values = {
        "port": str(spec.port),
        "address": "0.0.0.0",
        "host_id": spec.name,
        "service": spec.service,
        "generation": str(spec.generation),
        "python": "python3",
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], command)


def render_user_data(spec: HostSpec, template: str = DEFAULT_TEMPLATE) -> str:
    """The cloud-init user-data for ``spec``."""
    from jinja2 import TemplateError as JinjaError

    try:
        tpl = _environment().get_template(template)
        return str(
            tpl.render(
                service=spec.service,
                generation=spec.generation,
                host_name=spec.name,
                port=spec.port,
                command=_fill(spec.run.command, spec),
                setup=[_fill(c, spec) for c in spec.run.setup],
                restore=[_fill(c, spec) for c in spec.run.restore],
                env=dict(spec.run.env),
            )
        )
    except JinjaError as exc:
        raise TemplateError(f"template {template}: {exc}") from None
