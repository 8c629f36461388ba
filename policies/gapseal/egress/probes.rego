# Egress probes: route lookups and UDP connect() (no packet sent) must find no path off the host.
package gapseal.egress

import data.gapseal.lib

# METADATA
# title: Egress probes find no path off the host
# description: >-
#   Route lookups and UDP connect() towards public destinations (and any active probe the auditor named)
#   end in "network unreachable"; an outcome that shows a path (routed, connected, refused, answered) is egress.
#   A passive probe whose route leads to a gateway listed in data.allowlist.default_route_gateways (an enclave
#   router the site vouches for) is not; an active probe that got an answer is egress whatever its gateway.
# custom:
#   id: EGRESS-005
#   severity: high
#   remediation: >-
#     Remove the route or firewall accept rule the probe's detail names; the kernel must answer
#     ENETUNREACH (or the firewall must drop) for destinations outside the enclave.
#   controls: [eu-ai-act:art-15, hipaa:164.312(e)(1)]
deny contains violation if {
	input.probes.status == "ok"
	some i, probe in input.probes.probes
	probe.egress_possible == true
	not _passive_via_allowed_gateway(probe)
	subject := concat(" ", [probe.kind, probe.target])
	violation := lib.violation(
		"EGRESS-005",
		concat("", [
			"probe ", subject, " found a path off the host: ", probe.outcome,
			" (", lib.text(object.get(probe, "detail", null)), ")",
		]),
		subject,
		[lib.pointer(["probes", "probes", i])],
	)
}

deny contains violation if {
	not input.probes.status == "ok"
	violation := lib.unknown("EGRESS-005", "probes")
}

_passive_via_allowed_gateway(probe) if {
	probe.active == false
	probe.gateway in data.allowlist.default_route_gateways
}
