"""The ``certificates:`` section and ``services.*.tls`` (contract section 13).

:mod:`failover.config` declares the fields and calls :func:`certificate_problems`, which
checks them against the rest of the file (stores, DNS zones, paths).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from typing import Any

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator

from failover.data.settings import check_url
from failover.redact import register_secret
from providers.base import Duration

if TYPE_CHECKING:
    from failover.config import Config

Problems = list[tuple[tuple[Any, ...], str]]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Authority(_Model):
    url: str = Field(description="an ACME directory URL (https)")
    eab_kid: str | None = Field(default=None, description="external account binding key id")
    eab_hmac_key: str | None = Field(
        default=None, description="external account binding HMAC key (base64url); use ${ENV}"
    )
    ca_file: str | None = Field(default=None, description="trust for the authority's own HTTPS")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError(f"{value!r} is not an https:// ACME directory URL")
        return check_url(value)


class CertificatesConfig(_Model):
    email: str | None = Field(default=None, description="the ACME account's contact")
    authorities: list[Authority] = Field(min_length=1, description="tried in order")
    renew_before: Duration = Field(
        default=30 * 86400.0, gt=0, le=365 * 86400.0, description="renew with less left"
    )
    stores: list[str] | None = Field(default=None, description="default: every store")
    encryption_key: str = Field(
        min_length=16, description="seals certificate, key and account in the stores; ${ENV}"
    )


class TlsConfig(_Model):
    names: list[str] = Field(default_factory=list, description="default: the service's domains")
    cert_file: str = Field(default="tls/fullchain.pem", description="relative to the host's cwd")
    key_file: str = Field(default="tls/privkey.pem", description="relative; written mode 0600")
    reload: str | None = Field(default=None, description="run on the live host after a renewal")

    @field_validator("cert_file", "key_file")
    @classmethod
    def _relative(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not value or path.is_absolute() or ".." in path.parts or "\n" in value:
            raise ValueError(f"{value!r} must be a relative path inside the working directory")
        return value

    @field_validator("names")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        from failover.dnsconfig import normal_domain

        return [normal_domain(v) for v in value]


def certificate_problems(config: Config) -> Problems:
    """What ``certificates`` and each ``tls`` get wrong against the rest of the file."""
    out: Problems = []
    certs = config.certificates
    tls_services = [n for n, s in config.services.items() if s.tls is not None]
    if certs is None:
        for name in tls_services:
            out.append(
                (("services", name, "tls"), "needs a `certificates` section (authorities, key)")
            )
        return out
    register_secret(certs.encryption_key)
    for authority in certs.authorities:
        if authority.eab_hmac_key:
            register_secret(authority.eab_hmac_key)
    for i, authority in enumerate(certs.authorities):
        if (authority.eab_kid is None) != (authority.eab_hmac_key is None):
            out.append((("certificates", "authorities", i), "eab_kid and eab_hmac_key go together"))
    names = [s.name for s in config.stores]
    if not names:
        out.append((("certificates",), "no `stores` configured: certificates are kept there"))
    for i, store in enumerate(certs.stores or []):
        if store not in names:
            out.append((("certificates", "stores", i), f"no store named {store!r} in `stores`"))
    zones = config.zones()
    for sname in tls_services:
        tls = config.services[sname].tls
        assert tls is not None
        for i, name in enumerate(tls.names):
            if not zones.providers_of(name.removeprefix("*.")):
                where = ("services", sname, "tls", "names", i)
                out.append((where, f"{name!r} is in no configured DNS zone (DNS-01 needs one)"))
        if tls.cert_file == tls.key_file:
            out.append((("services", sname, "tls", "key_file"), "must differ from cert_file"))
    return out
