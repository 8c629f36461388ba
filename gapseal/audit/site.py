"""The site data file: who is audited, by whom, and what lies inside the enclave.

``gapseal audit run --site FILE`` (and ``gapseal audit evaluate --data FILE``) read it::

    apiVersion: gapseal/v1
    kind: Site
    scope:
      organisation: Example Clinic
      system: radiology-llm
      assessor: J. Doe
      description: quarterly egress audit        # optional
    allowlist:                                   # every key optional; an omitted key keeps the default
      enclave: [10.20.0.0/16]                    # networks traffic may go to
      default_route_gateways: [10.20.0.1]        # enclave routers a default route may point at
      resolvers: [10.20.0.53]                    # internal DNS servers
      ntp_servers: [10.20.0.123]                 # internal time servers (addresses or host names)
      proxies: [http://proxy.enclave:3128]       # internal proxy URLs (userinfo written as ***)
      registries: [registry.enclave:5000]        # container registries and package mirrors, host[:port]
      log_hosts: [10.20.0.10]                    # internal log collectors (addresses)

The allowlist is deep-merged over ``policies/data/allowlist.yaml`` (lists replace lists), so the defaults documented
there (RFC 1918, ULA and link-local ranges as the enclave; no gateway, resolver, NTP server, proxy, registry or log
host allowed) apply to every key a site leaves out, and to an audit with no site file at all. The file's sha256 is
recorded in the evidence so a reader knows exactly which site data the verdict rests on.

A plain ``--data`` document (``{allowlist: {...}}`` with no ``kind``) is still accepted by ``audit evaluate``; see
``load_data_file``.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gapseal.errors import AuditError

SITE_API_VERSION: Final = "gapseal/v1"
SITE_KIND: Final = "Site"
MAX_SITE_BYTES: Final = 1024 * 1024
"""A site file is a few kilobytes; anything this large is not one."""

DEFAULTS_NOTE: Final = (
    "no site file given: the defaults of policies/data/allowlist.yaml apply (enclave = 10.0.0.0/8, 172.16.0.0/12, "
    "192.168.0.0/16, 169.254.0.0/16, fc00::/7, fe80::/10; no default-route gateway, resolver, NTP server, proxy, "
    "registry or log host is allowed; loopback resolvers and time sources are always allowed)"
)
"""What an audit without ``--site`` assumes; the CLI help, the README and the evidence say it in these words."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class SiteScope(_Model):
    """Who and what the audit is about (shown in the report and in OSCAL)."""

    organisation: str = Field(min_length=1)
    """The organisation operating the system."""
    system: str = Field(min_length=1)
    """The system (enclave, deployment) audited."""
    assessor: str = Field(min_length=1)
    """The person or team running the audit."""
    description: str | None = None
    """Free text: purpose or boundary of this assessment."""


def _check_network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as e:
        raise ValueError(f"{value!r} is not an address or network in CIDR form: {e}") from e


def _check_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as e:
        raise ValueError(f"{value!r} is not an IP address") from e


def _check_name(value: str) -> str:
    """A host name, address or ``host:port`` / URL: no white space or control characters, not empty."""
    if not value or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{value!r} is not a host name, address or URL")
    return value


class SiteAllowlist(_Model):
    """What lies inside the enclave; each key left out (null) keeps the default of ``policies/data/allowlist.yaml``."""

    enclave: list[str] | None = None
    """Networks (CIDR, or a bare address) traffic may go to."""
    default_route_gateways: list[str] | None = None
    """Enclave routers a default route may point at (addresses); route and active probes honour them."""
    resolvers: list[str] | None = None
    """Internal DNS servers (addresses)."""
    ntp_servers: list[str] | None = None
    """Internal time servers (addresses or host names, as chrony/timesyncd/ntpsec configuration writes them)."""
    proxies: list[str] | None = None
    """Internal proxy URLs allowed in proxy variables and package-manager proxy settings (exact values)."""
    registries: list[str] | None = None
    """Container registries and package mirrors inside the enclave, as ``host`` or ``host:port``."""
    log_hosts: list[str] | None = None
    """Internal log collectors (addresses); treated as enclave destinations."""

    @field_validator("enclave")
    @classmethod
    def _networks(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [_check_network(x) for x in v]

    @field_validator("default_route_gateways", "resolvers", "log_hosts")
    @classmethod
    def _addresses(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [_check_address(x) for x in v]

    @field_validator("ntp_servers", "proxies", "registries")
    @classmethod
    def _names(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [_check_name(x) for x in v]


class Site(_Model):
    """A site data file (``apiVersion: gapseal/v1``, ``kind: Site``)."""

    apiVersion: Literal["gapseal/v1"]  # noqa: N815 - the field is named as Kubernetes-style files write it
    """Always ``gapseal/v1``."""
    kind: Literal["Site"]
    """Always ``Site``."""
    scope: SiteScope
    """Who and what is audited."""
    allowlist: SiteAllowlist = Field(default_factory=SiteAllowlist)
    """What lies inside the enclave."""

    def data_override(self) -> dict[str, Any]:
        """The data document merged over ``policies/data`` (only the keys the site sets)."""
        return {"allowlist": self.allowlist.model_dump(exclude_none=True)}


@dataclass(frozen=True)
class LoadedSite:
    """A site file as read: the model, where it came from and the sha256 of its exact bytes."""

    site: Site
    path: str
    sha256: str
    """Lower-case hex sha256 of the file's bytes."""

    @property
    def digest(self) -> str:
        """``sha256:<hex>``."""
        return f"sha256:{self.sha256}"


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SITE_BYTES + 1)
    except OSError as e:
        raise AuditError(
            f"cannot read the site file: {e.strerror or e}", where=str(path), hint="pass an existing site file"
        ) from e
    if len(data) > MAX_SITE_BYTES:
        raise AuditError(f"the site file is larger than {MAX_SITE_BYTES} bytes", where=str(path))
    return data


def _parse(data: bytes, where: str) -> Any:
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError as e:
        raise AuditError(f"the site file is not valid YAML/JSON: {e}", where=where) from e


def parse_site(data: bytes, *, where: str) -> Site:
    """Validate a site document's bytes; raises ``AuditError`` naming the problem."""
    doc = _parse(data, where)
    if not isinstance(doc, dict):
        raise AuditError("the site file must hold a mapping", where=where, hint=_EXAMPLE_HINT)
    if doc.get("apiVersion") != SITE_API_VERSION or doc.get("kind") != SITE_KIND:
        raise AuditError(
            f"not a site file: apiVersion {doc.get('apiVersion')!r}, kind {doc.get('kind')!r} "
            f"(expected {SITE_API_VERSION!r}, {SITE_KIND!r})",
            where=where,
            hint=_EXAMPLE_HINT,
        )
    try:
        return Site.model_validate(doc)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(document)'}: {err['msg']}" for err in e.errors()
        )
        raise AuditError(f"the site file is invalid: {problems}", where=where, hint=_EXAMPLE_HINT) from e


_EXAMPLE_HINT = (
    "write apiVersion: gapseal/v1, kind: Site, scope: {organisation, system, assessor}, allowlist: {enclave: [...], "
    "...}; see gapseal/audit/site.py or the README's auditing section"
)


def load_site(path: Path) -> LoadedSite:
    """Read and validate the site file at ``path``."""
    data = _read(path)
    site = parse_site(data, where=str(path))
    return LoadedSite(site=site, path=str(path), sha256=hashlib.sha256(data).hexdigest())


def load_data_file(path: Path) -> tuple[dict[str, Any], str]:
    """Read ``audit evaluate --data``: a ``Site`` file, or a plain data mapping; return the override and its sha256.

    A document with ``kind: Site`` is validated as a site file and contributes its allowlist; any other mapping is
    merged over ``policies/data`` as it stands (the form ``--data`` always took).
    """
    data = _read(path)
    doc = _parse(data, str(path))
    digest = hashlib.sha256(data).hexdigest()
    if isinstance(doc, dict) and ("kind" in doc or "apiVersion" in doc):
        return parse_site(data, where=str(path)).data_override(), digest
    if not isinstance(doc, dict):
        raise AuditError(
            "--data file must hold a mapping, e.g. {allowlist: {enclave: [10.20.0.0/16]}}", where=str(path)
        )
    return doc, digest


class SiteRecord(_Model):
    """What the evidence records about the site data an audit used."""

    source: Literal["file", "defaults"]
    """``file``: a site file was given; ``defaults``: none was, the documented defaults applied."""
    path: str | None = None
    """The site file as given on the command line."""
    sha256: str | None = None
    """``sha256:<hex>`` of the site file's exact bytes."""
    scope: SiteScope | None = None
    """The site file's scope."""
    note: str | None = None
    """For ``defaults``: what the defaults are."""


def site_record(loaded: LoadedSite | None) -> SiteRecord:
    """The evidence's record of the site data (``defaults`` when ``loaded`` is None)."""
    if loaded is None:
        return SiteRecord(source="defaults", note=DEFAULTS_NOTE)
    return SiteRecord(source="file", path=loaded.path, sha256=loaded.digest, scope=loaded.site.scope)
