"""Who signed the evidence and what it is about: the signer, the scope from the site file, and each host's profile.

The report, the OSCAL document and the attestation predicate all name these, from this one module:

- ``Signer``: the auditor key's id (sha256 of its SubjectPublicKeyInfo DER, as everywhere in gapseal), its OpenSSH
  fingerprint (``SHA256:…``, what ``ssh-keygen -lf`` prints for the same key; go-securesystemslib, inside cosign,
  uses the same fingerprint as key id) and, when a trust file is given, the name that file gives the key. The signer is
  what the *signer* says of itself; ``gapseal evidence verify`` checks the key id against the key that actually
  verified the signature, and names that key from the verifier's own trust file.
- ``AuditScope``: organisation, system and assessor from the site file (``gapseal.audit.site``), with the site
  file's path and sha256; without a site file the scope says so.
- ``HostProfile``: per host, its OS, kernel, addresses, collection time and the bundle its install record names.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization

if TYPE_CHECKING:
    from gapseal.audit.facts import HostFacts
    from gapseal.audit.site import SiteRecord
    from gapseal.signing.keys import VerifyingKey

NO_SITE_NOTE = "no site file given: organisation, system and assessor not stated; the policies' default data applies"


@dataclass(frozen=True)
class Signer:
    """The key that signs the evidence."""

    key_id: str
    """Lower-case hex sha256 of the public key's SubjectPublicKeyInfo DER."""
    fingerprint: str
    """OpenSSH SHA256 fingerprint of the public key (``SHA256:`` + unpadded base64)."""
    name: str | None = None
    """The name the trust file gives this key, when one was given and lists it."""
    trust_file: str | None = None
    """The trust file the name comes from."""

    def as_data(self) -> dict[str, Any]:
        """The signer as the attestation predicate records it."""
        return {
            "key_id": self.key_id,
            "fingerprint": self.fingerprint,
            "name": self.name,
            "trust_file": self.trust_file,
        }


def ssh_fingerprint(key: VerifyingKey) -> str:
    """Return the OpenSSH SHA256 fingerprint of ``key`` (``ssh-keygen -lf`` prints the same)."""
    public = serialization.load_pem_public_key(key.pem())
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def signer_of(key: VerifyingKey, names: Mapping[str, str] | None = None, trust_file: str | None = None) -> Signer:
    """Describe ``key``; ``names`` maps key ids to the names a trust file gives them."""
    name = (names or {}).get(key.key_id)
    return Signer(key.key_id, ssh_fingerprint(key), name, trust_file if name is not None else None)


@dataclass(frozen=True)
class AuditScope:
    """What the audit is about, as the site file states it."""

    organisation: str | None = None
    system: str | None = None
    assessor: str | None = None
    description: str | None = None
    site_file: str | None = None
    """The site file's name as given on the command line."""
    site_digest: str | None = None
    """``sha256:<hex>`` of the site file's exact bytes."""
    note: str = NO_SITE_NOTE
    """Without a site file: what the audit assumed instead."""

    @property
    def stated(self) -> bool:
        """True when a site file stated the scope."""
        return self.site_digest is not None

    def as_data(self) -> dict[str, Any]:
        """The scope as the attestation predicate records it."""
        return {
            "organisation": self.organisation,
            "system": self.system,
            "assessor": self.assessor,
            "description": self.description,
            "site_file": self.site_file,
            "site_digest": self.site_digest,
        }


NO_SCOPE = AuditScope()


def audit_scope(record: SiteRecord | None) -> AuditScope:
    """The scope the results' site record states (``results.site``, written by ``audit run --site``)."""
    if record is None:
        return NO_SCOPE
    if record.source != "file" or record.scope is None:
        return AuditScope(note=record.note or NO_SITE_NOTE)
    s = record.scope
    return AuditScope(
        organisation=s.organisation,
        system=s.system,
        assessor=s.assessor,
        description=s.description,
        site_file=record.path,
        site_digest=record.sha256,
    )


@dataclass(frozen=True)
class HostProfile:
    """What the evidence says about one host besides its findings."""

    host: str
    hostname: str
    os: str | None
    kernel: str
    addresses: tuple[str, ...]
    """The host's own addresses (its ``local`` routes), loopback left out, sorted."""
    collected_at: dt.datetime
    netns: str | None
    bundle_name: str | None
    bundle_version: str | None
    manifest_digest: str | None

    @property
    def bundle(self) -> str | None:
        """``name version`` of the installed bundle, when the install record names it."""
        if self.bundle_name is None:
            return None
        return f"{self.bundle_name} {self.bundle_version or '(no version)'}"


def host_profile(host: str, facts: HostFacts) -> HostProfile:
    """Read ``host``'s profile from its facts: addresses are the destinations of its ``local`` routes."""
    addresses = sorted(
        {
            r.dst.cidr.split("/")[0]
            for r in facts.routes.routes
            if r.type == "local" and r.dst.address_class != "loopback"
        }
    )
    return HostProfile(
        host=host,
        hostname=facts.host.hostname,
        os=facts.host.os,
        kernel=facts.host.kernel,
        addresses=tuple(addresses),
        collected_at=facts.collected_at,
        netns=facts.host.netns,
        bundle_name=facts.integrity.bundle_name,
        bundle_version=facts.integrity.bundle_version,
        manifest_digest=facts.integrity.manifest_digest,
    )
