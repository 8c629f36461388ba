# Package and container sources: apt, pip, npm, conda, podman and docker fetch only from inside the enclave.
package gapseal.egress

import data.gapseal.lib

# METADATA
# title: Package and container sources stay inside the enclave
# description: >-
#   Every apt source and proxy, pip index and proxy, npm registry and proxy, conda channel and proxy, podman
#   search registry and mirror, and docker registry mirror and proxy is local (a file or cdrom URI, a path,
#   loopback, a blocked registry), an address inside the enclave, a registry or mirror listed in
#   data.allowlist.registries (host or host:port), or, for a proxy, a URL listed in data.allowlist.proxies.
#   Anything else would make the next install or pull reach outside the enclave.
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
			entry.manager, " ", entry.kind, " ", entry.value, " (", entry.location, ") is outside the enclave",
		]),
		concat(" ", [entry.manager, entry.value]),
		[lib.pointer(["package_sources", "entries", i])],
	)
}

deny contains violation if {
	not input.package_sources.status == "ok"
	violation := lib.unknown("EGRESS-010", "package_sources")
}

_source_inside(entry) if entry.hostport in data.allowlist.registries

_source_inside(entry) if entry.host in data.allowlist.registries

_source_inside(entry) if {
	entry.kind == "proxy"
	entry.value in data.allowlist.proxies
}

_source_inside(entry) if {
	entry.network != null
	lib.in_enclave(entry.network)
}
