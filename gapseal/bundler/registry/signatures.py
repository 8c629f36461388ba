"""Finding a bundle manifest's signatures on a registry: the OCI referrers API, else the referrers tag schema.

The listing comes from the registry, so it is bounded like everything else read from it: the index is read up to
``MAX_REFERRERS_INDEX`` bytes, at most ``MAX_REFERRERS`` entries of any type and ``verify.MAX_SIGNATURES`` Sigstore
signatures (the bundle's own rule: a pulled bundle with more would not verify) are accepted, and a digest listed
twice is refused.
"""

from __future__ import annotations

import urllib.parse

from pydantic import ValidationError

from gapseal.bundler import layout as oci
from gapseal.bundler.registry.distribution import Distribution
from gapseal.bundler.registry.reference import fallback_tag
from gapseal.bundler.verify import MAX_SIGNATURES

MAX_REFERRERS = 64
"""The most referrers of one bundle manifest gapseal reads, of any type (other tools may attach their own)."""
MAX_REFERRERS_INDEX = 256 * 1024


def signature_referrers(
    client: Distribution, repo: str, subject: str, *, tag_schema_only: bool = False, all_types: bool = False
) -> tuple[list[oci.Descriptor], str]:
    """The Sigstore referrers of ``subject`` in ``repo``, and where they were found.

    Where: ``referrers``, ``tag-schema`` or ``none``. ``all_types`` keeps referrers of any artifact type (to merge
    into the tag schema's index).
    """
    what = f"finding the signature of {repo}@{subject}"
    query = urllib.parse.urlencode({"artifactType": oci.ARTIFACT_SIGSTORE})
    attempts = [] if tag_schema_only else [("referrers", f"/v2/{repo}/referrers/{subject}?{query}")]
    # No referrers API, or nothing listed there (pushed before the registry had one): the tag schema.
    attempts.append(("tag-schema", f"/v2/{repo}/manifests/{fallback_tag(subject)}"))
    for mode, path in attempts:
        data = client.index_or_none(path, what, cap=MAX_REFERRERS_INDEX)
        if data is None:
            continue
        try:
            found = oci.Index.model_validate_json(data).manifests
        except ValidationError as e:
            raise client.http.error(
                f"{what}: the registry's referrers index is malformed",
                hint=f"delete {repo}:{fallback_tag(subject)} and load the bundle again",
            ) from e
        if len(found) > MAX_REFERRERS:
            raise client.http.error(
                f"{what}: the registry lists {len(found)} referrers; gapseal reads at most {MAX_REFERRERS}",
                hint="the registry is misconfigured or hostile; delete the extra referrers",
            )
        digests = [d.digest for d in found]
        if len(set(digests)) != len(digests):
            twice = next(d for d in digests if digests.count(d) > 1)
            raise client.http.error(f"{what}: the registry lists referrer {twice} more than once; refused")
        signatures = [d for d in found if d.artifact_type == oci.ARTIFACT_SIGSTORE]
        if len(signatures) > MAX_SIGNATURES:
            raise client.http.error(
                f"{what}: the registry lists {len(signatures)} signatures; a bundle carries at most {MAX_SIGNATURES}",
                hint="the registry is misconfigured or hostile; delete the extra referrers",
            )
        sigs = found if all_types else signatures
        if sigs:
            return sigs, mode
    return [], "none"
