# Package and container sources: apt, pip, npm, conda, podman and docker fetch only from inside the enclave.
package gapseal.egress

import data.gapseal.lib

# METADATA
# title: Package and container sources stay inside the enclave
# description: >-
#   Every apt source and proxy, pip index and proxy, npm registry and proxy, conda channel and proxy, podman
#   search registry and mirror, and docker registry mirror and proxy is local (a file or cdrom URI, a path,
#   loopback, a blocked registry), an address inside the enclave, or a registry or mirror listed in
#   data.allowlist.registries (host or host:port); a proxy must be a URL listed in data.allowlist.proxies,
#   wherever it stands (a proxy relays anywhere). Anything else would make the next install or pull reach
#   outside the enclave.
# custom:
#   id: EGRESS-010
#   severity: medium
#   remediation: >-
#     Point the source named in the finding at the site's internal mirror or registry (or remove it), and list
#     that mirror's host[:port] in the site file's allowlist.registries.
#   controls: [eu-ai-act:art-15, hipaa:164.312(e)(1)]
deny contains violation if {
	input.package_sources.status == "ok"
	some i, entry in input.package_sources.entries
	entry.local != true
	not _source_inside(entry)
	violation := lib.violation(
		"EGRESS-010",
		concat("", [
			entry.manager, " ", entry.kind, " ", entry.value, " (", entry.location, ") is not local, in the enclave ",
			"or allowlisted",
		]),
		concat(" ", [entry.manager, entry.value]),
		[lib.pointer(["package_sources", "entries", i])],
	)
}

deny contains violation if {
	not input.package_sources.status == "ok"
	violation := lib.unknown("EGRESS-010", "package_sources")
}

# A proxy relays to anywhere, even from inside the enclave: only a proxy the site lists is inside (as for EGRESS-006).
_source_inside(entry) if {
	entry.kind == "proxy"
	entry.value in data.allowlist.proxies
}

_source_inside(entry) if {
	entry.kind != "proxy"
	entry.hostport in data.allowlist.registries
}

_source_inside(entry) if {
	entry.kind != "proxy"
	entry.host in data.allowlist.registries
}

_source_inside(entry) if {
	entry.kind != "proxy"
	entry.network != null
	lib.in_enclave(entry.network)
}
