# Routes: no way off the host except towards the enclave.
package gapseal.egress

import data.gapseal.lib

# METADATA
# title: No default route
# description: >-
#   A default route sends traffic for any destination off the host. An isolated host has none, unless its
#   gateway is an enclave router listed in data.allowlist.default_route_gateways.
# custom:
#   id: EGRESS-001
#   severity: high
#   remediation: >-
#     Delete the default route (ip route del default; ip -6 route del default) and the configuration that
#     creates it (DHCP, netplan, NetworkManager, systemd-networkd), or list the enclave router's address in
#     data.allowlist.default_route_gateways.
#   controls: [eu-ai-act:art-15, hipaa:164.312(e)(1)]
deny contains violation if {
	input.routes.status == "ok"
	some i, route in input.routes.default_routes
	not route.gateway in data.allowlist.default_route_gateways
	subject := route_text(route)
	violation := lib.violation(
		"EGRESS-001",
		concat("", ["default route ", subject, " sends traffic for any destination off the host"]),
		subject,
		[lib.pointer(["routes", "default_routes", i])],
	)
}

deny contains violation if {
	not input.routes.status == "ok"
	violation := lib.unknown("EGRESS-001", "routes")
}

# METADATA
# title: Routes lead only into the enclave
# description: >-
#   Every route that forwards traffic off the host (other than default routes, see EGRESS-001) has a
#   destination inside an enclave network (data.allowlist.enclave). Link-local routes cannot leave the link.
# custom:
#   id: EGRESS-002
#   severity: high
#   remediation: >-
#     Remove routes to networks outside the enclave, or add the network to data.allowlist.enclave if it is
#     part of the isolated site.
#   controls: [eu-ai-act:art-15, hipaa:164.312(e)(1)]
deny contains violation if {
	input.routes.status == "ok"
	some i, route in input.routes.forwarding_routes
	not route.is_default
	route.dst.address_class != "link_local"
	not lib.in_enclave(route.dst)
	subject := route_text(route)
	violation := lib.violation(
		"EGRESS-002",
		concat("", ["route ", subject, " leads to ", route.dst.cidr, ", outside the enclave"]),
		subject,
		[lib.pointer(["routes", "forwarding_routes", i])],
	)
}

deny contains violation if {
	not input.routes.status == "ok"
	violation := lib.unknown("EGRESS-002", "routes")
}

route_text(route) := concat(" ", [
	route.dst.cidr,
	"via", lib.text(object.get(route, "gateway", null)),
	"dev", lib.text(object.get(route, "dev", null)),
	"table", lib.text(route.table),
])
