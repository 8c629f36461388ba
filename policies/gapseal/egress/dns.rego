# DNS: the resolver only asks servers inside the enclave.
package gapseal.egress

import data.gapseal.lib

# METADATA
# title: Name resolution uses only internal resolvers
# description: >-
#   Every nameserver in resolv.conf and systemd-resolved's DNS= and FallbackDNS= is a loopback stub or an
#   internal resolver listed in data.allowlist.resolvers. DNS queries to an outside server leak names and can
#   carry data out.
# custom:
#   id: EGRESS-007
#   severity: medium
#   remediation: >-
#     Replace the nameserver with the site's internal resolver (or remove it), including resolved.conf's
#     FallbackDNS= which applies when no DNS= is set; list internal resolvers in data.allowlist.resolvers.
#   controls: [eu-ai-act:art-15, hipaa:164.312(e)(1)]
deny contains violation if {
	input.dns.status == "ok"
	some i, server in input.dns.nameservers
	server.address_class != "loopback"
	not server.address in data.allowlist.resolvers
	violation := lib.violation(
		"EGRESS-007",
		concat("", [
			"nameserver ", server.address, " (", server.origin, ") is not an internal resolver",
		]),
		server.address,
		[lib.pointer(["dns", "nameservers", i])],
	)
}

deny contains violation if {
	not input.dns.status == "ok"
	violation := lib.unknown("EGRESS-007", "dns")
}
