"""Sandboxed rendering of the cloud-init templates that boot a host running the service.

Templates are rendered with Jinja2's ``SandboxedEnvironment`` and ``StrictUndefined``: a
template cannot reach Python internals, and a misspelt variable is an error, not an
empty string on a machine nobody can log in to.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from failover.data.agent import host_config
from failover.data.settings import StoreBase
from providers.base import HostSpec
from providers.base import RunSpec
from providers.util import fill_placeholders
from providers.util import image_placeholders

if TYPE_CHECKING:
    from failover.config import ServiceConfig

DEFAULT_TEMPLATE = "cloud-init/command.yaml.j2"


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
    from jinja2 import FileSystemLoader
    from jinja2 import StrictUndefined
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
    return fill_placeholders(command, image_placeholders(spec))


def render_user_data(
    spec: HostSpec, template: str = DEFAULT_TEMPLATE, data: dict[str, Any] | None = None
) -> str:
    """The cloud-init user-data for ``spec``; ``data`` the backup timer's settings
    (:func:`failover.data.agent.host_config`), None for none."""
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
                # What a local host gets too (README): the same names, every unit.
                failover_env=failover_environment(spec),
                data=data,
            )
        )
    except JinjaError as exc:
        raise TemplateError(f"template {template}: {exc}") from None


def failover_environment(spec: HostSpec) -> dict[str, str]:
    """The ``FAILOVER_*`` variables of a host booted from an image; ``FAILOVER_ADDRESS``
    is what ``{address}`` is there, the address to listen on."""
    values = image_placeholders(spec)
    return {
        "FAILOVER_ADDRESS": values["address"],
        "FAILOVER_PORT": values["port"],
        "FAILOVER_HOST_ID": values["host_id"],
        "FAILOVER_PROVIDER": spec.provider,
        "FAILOVER_SERVICE": spec.service,
        "FAILOVER_GENERATION": values["generation"],
    }


def host_name(service: str, generation: int, provider: str, purpose: str = "serve") -> str:
    """The name a host of ``service`` gets on ``provider``: stable per generation, so a
    resumed provision finds the host it already asked for."""
    suffix = "drill" if purpose == "drill" else f"g{generation}"
    return f"{service}-{suffix}-{provider}"


def host_lines(
    service: str,
    svc: ServiceConfig,
    stores: Sequence[StoreBase],
    purpose: str,
    blocked: Collection[str] = (),
) -> tuple[str, ...]:
    """The data engine's part of a new host's restore phase (engine pgbackrest)."""
    if svc.data is None or svc.data.engine != "pgbackrest":
        return ()
    from failover.data.engines.pgconf import host_line

    return (host_line(service, svc.data, stores, svc.port, purpose, blocked),)


def host_spec(
    service: str,
    svc: ServiceConfig,
    *,
    generation: int,
    provider: str,
    purpose: str = "serve",
    name: str | None = None,
    stores: Sequence[StoreBase] = (),
    blocked: Collection[str] = (),
) -> HostSpec:
    """The HostSpec of a new host of ``service``, its user-data rendered. The runner and
    ``validate`` both build it here, so what ``validate`` checks is what a move boots."""
    spec = HostSpec(
        name=name or host_name(service, generation, provider, purpose),
        service=service,
        generation=generation,
        port=svc.port,
        run=RunSpec(
            svc.run.command,
            tuple(svc.run.setup),
            tuple(svc.run.restore) + host_lines(service, svc, stores, purpose, blocked),
            dict(svc.run.env),
        ),
        purpose=purpose,
        provider=provider,
    )
    timer = host_config(service, svc.data, list(stores))
    user_data = render_user_data(spec, data=timer) if timer else render_user_data(spec)
    return HostSpec(**{**spec.__dict__, "user_data": user_data})
