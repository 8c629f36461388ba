# Tests of EGRESS-005 with the site's allowed default-route gateways. Each test_<name> runs with input_<name>.
package gapseal.egress_probes_gateway_test

import data.gapseal.egress
import data.gapseal.fixtures

_probe(kind, active, outcome, gateway) := {
	"kind": kind, "target": "203.0.113.1", "family": "inet", "active": active, "outcome": outcome,
	"egress_possible": true, "detail": "unicast dev veth1 gateway 10.231.1.1", "errno": null, "gateway": gateway,
}

_probes(items) := {"status": "ok", "reason": null, "egress_possible": true, "active_targets": [], "probes": items}

input_success_egress_005_passive_via_allowed_gateway := fixtures.host_with({"probes": _probes([
	_probe("route", false, "routed", "10.231.1.1"),
	_probe("udp_connect", false, "routed", "10.231.1.1"),
])})

test_success_egress_005_passive_via_allowed_gateway if {
	count(fixtures.of_rule(egress.deny, "EGRESS-005")) == 0 with data.allowlist.default_route_gateways as ["10.231.1.1"]
}

input_fail_egress_005_passive_via_other_gateway := fixtures.host_with({"probes": _probes([
	_probe("route", false, "routed", "10.231.1.5"),
])})

test_fail_egress_005_passive_via_other_gateway if {
	fixtures.of_rule(egress.deny, "EGRESS-005") == {fixtures.expect(
		"EGRESS-005",
		"probe route 203.0.113.1 found a path off the host: routed (unicast dev veth1 gateway 10.231.1.1)",
		"route 203.0.113.1",
		["/probes/probes/0"],
	)} with data.allowlist.default_route_gateways as ["10.231.1.1"]
}

input_fail_egress_005_active_answer_via_allowed_gateway := fixtures.host_with({"probes": _probes([
	_probe("tcp_connect", true, "connected", "10.231.1.1"),
])})

test_fail_egress_005_active_answer_via_allowed_gateway if {
	fixtures.of_rule(egress.deny, "EGRESS-005") == {fixtures.expect(
		"EGRESS-005",
		"probe tcp_connect 203.0.113.1 found a path off the host: connected (unicast dev veth1 gateway 10.231.1.1)",
		"tcp_connect 203.0.113.1",
		["/probes/probes/0"],
	)} with data.allowlist.default_route_gateways as ["10.231.1.1"]
}
