# Tests of gapseal.egress. Each test_<name> runs with input_<name> as its input (see lib/fixtures_test.rego).
package gapseal.egress_test

import data.gapseal.egress
import data.gapseal.fixtures

public_default := fixtures.net("0.0.0.0/0", "inet", 0, "00000000", "ffffffff", "unspecified")

public_net := fixtures.net("203.0.113.0/24", "inet", 24, "cb007100", "cb0071ff", "documentation")

default_route := fixtures.route(public_default, "10.231.1.1", "veth1", true)

# The compliant host passes every egress rule.
input_success_egress_compliant_host := fixtures.compliant

test_success_egress_compliant_host if {
	count(egress.deny) == 0
}

# ------------------------------------------------------------------ EGRESS-001 default route

input_success_egress_001_no_default_route := fixtures.compliant

test_success_egress_001_no_default_route if {
	count(fixtures.of_rule(egress.deny, "EGRESS-001")) == 0
}

input_success_egress_001_allowlisted_gateway := fixtures.host_with({"routes": fixtures.with_keys(fixtures.routes_ok, {"default_routes": [default_route]})})

test_success_egress_001_allowlisted_gateway if {
	count(fixtures.of_rule(egress.deny, "EGRESS-001")) == 0 with data.allowlist.default_route_gateways as ["10.231.1.1"]
}

input_fail_egress_001_default_route := input_success_egress_001_allowlisted_gateway

test_fail_egress_001_default_route if {
	fixtures.of_rule(egress.deny, "EGRESS-001") == {fixtures.expect(
		"EGRESS-001",
		"default route 0.0.0.0/0 via 10.231.1.1 dev veth1 table main sends traffic for any destination off the host",
		"0.0.0.0/0 via 10.231.1.1 dev veth1 table main",
		["/routes/default_routes/0"],
	)}
}

input_fail_egress_001_routes_unknown := fixtures.host_with({"routes": fixtures.unknown_domain("ip: command not found")})

test_fail_egress_001_routes_unknown if {
	fixtures.of_rule(egress.deny, "EGRESS-001") == {fixtures.expect_unknown(
		"EGRESS-001",
		"routes could not be collected: ip: command not found",
		"routes",
		["/routes"],
	)}
}

input_fail_egress_001_routes_missing := object.remove(fixtures.compliant, ["routes"])

test_fail_egress_001_routes_missing if {
	fixtures.of_rule(egress.deny, "EGRESS-001") == {fixtures.expect_unknown(
		"EGRESS-001",
		"routes could not be collected: missing from the facts",
		"routes",
		["/routes"],
	)}
}

# ------------------------------------------------------------------ EGRESS-002 forwarding routes

link_local := fixtures.net(
	"fe80::/64", "inet6", 64,
	"fe800000000000000000000000000000", "fe80000000000000ffffffffffffffff", "link_local",
)

input_success_egress_002_enclave_and_link_local_routes := fixtures.host_with({"routes": fixtures.with_keys(fixtures.routes_ok, {"forwarding_routes": [
	fixtures.route(fixtures.enclave_net, null, "veth1", false),
	fixtures.route(link_local, null, "veth1", false),
]})})

test_success_egress_002_enclave_and_link_local_routes if {
	count(fixtures.of_rule(egress.deny, "EGRESS-002")) == 0
}

input_fail_egress_002_route_beyond_enclave := fixtures.host_with({"routes": fixtures.with_keys(fixtures.routes_ok, {"forwarding_routes": [
	fixtures.route(fixtures.enclave_net, null, "veth1", false),
	fixtures.route(public_net, "10.231.1.1", "veth1", false),
]})})

test_fail_egress_002_route_beyond_enclave if {
	fixtures.of_rule(egress.deny, "EGRESS-002") == {fixtures.expect(
		"EGRESS-002",
		"route 203.0.113.0/24 via 10.231.1.1 dev veth1 table main leads to 203.0.113.0/24, outside the enclave",
		"203.0.113.0/24 via 10.231.1.1 dev veth1 table main",
		["/routes/forwarding_routes/1"],
	)}
}

# The enclave route fails once the site's enclave no longer contains it (nothing is assumed inside).
input_fail_egress_002_enclave_narrowed := fixtures.compliant

test_fail_egress_002_enclave_narrowed if {
	narrowed := [{"cidr": "10.99.0.0/16", "family": "inet", "prefixlen": 16, "first": "0a630000", "last": "0a63ffff"}]
	fixtures.of_rule(egress.deny, "EGRESS-002") == {fixtures.expect(
		"EGRESS-002",
		"route 10.231.1.0/30 via - dev veth1 table main leads to 10.231.1.0/30, outside the enclave",
		"10.231.1.0/30 via - dev veth1 table main",
		["/routes/forwarding_routes/0"],
	)} with data.allowlist.enclave_networks as narrowed
}

# An annotation from gapseal's evaluator (enclave: false) decides, whatever the hex bounds say.
input_fail_egress_002_evaluator_annotation := fixtures.host_with({"routes": fixtures.with_keys(fixtures.routes_ok, {"forwarding_routes": [
	fixtures.route(fixtures.with_keys(fixtures.enclave_net, {"enclave": false}), null, "veth1", false),
]})})

test_fail_egress_002_evaluator_annotation if {
	count(fixtures.of_rule(egress.deny, "EGRESS-002")) == 1
}

input_fail_egress_002_routes_unknown := fixtures.host_with({"routes": fixtures.unknown_domain("ip -j route failed")})

test_fail_egress_002_routes_unknown if {
	fixtures.of_rule(egress.deny, "EGRESS-002") == {fixtures.expect_unknown(
		"EGRESS-002", "routes could not be collected: ip -j route failed", "routes", ["/routes"],
	)}
}

# ------------------------------------------------------------------ EGRESS-003 output policy

nft_with(changes) := fixtures.with_key(fixtures.firewall_ok, "nftables", fixtures.with_keys(fixtures.firewall_ok.nftables, changes))

input_success_egress_003_separate_ip_and_ip6_chains := fixtures.host_with({"firewall": nft_with({"output_policy": {"ip": "drop", "ip6": "drop"}})})

test_success_egress_003_separate_ip_and_ip6_chains if {
	count(fixtures.of_rule(egress.deny, "EGRESS-003")) == 0
}

input_fail_egress_003_ipv6_not_dropped := fixtures.host_with({"firewall": nft_with({"output_policy": {"ip": "drop", "ip6": "accept"}})})

test_fail_egress_003_ipv6_not_dropped if {
	fixtures.of_rule(egress.deny, "EGRESS-003") == {fixtures.expect(
		"EGRESS-003",
		"IPv6 output is not dropped by default: no ip6 or inet filter chain on hook output has policy drop",
		"nftables ip6 output policy",
		["/firewall/nftables/output_policy"],
	)}
}

input_fail_egress_003_no_ruleset := fixtures.host_with({"firewall": nft_with({"output_policy": {}, "chains": [], "rules": []})})

test_fail_egress_003_no_ruleset if {
	fixtures.of_rule(egress.deny, "EGRESS-003") == {
		fixtures.expect(
			"EGRESS-003",
			"IPv4 output is not dropped by default: no ip or inet filter chain on hook output has policy drop",
			"nftables ip output policy",
			["/firewall/nftables/output_policy"],
		),
		fixtures.expect(
			"EGRESS-003",
			"IPv6 output is not dropped by default: no ip6 or inet filter chain on hook output has policy drop",
			"nftables ip6 output policy",
			["/firewall/nftables/output_policy"],
		),
	}
}

input_fail_egress_003_nftables_unknown := fixtures.host_with({"firewall": fixtures.with_key(fixtures.firewall_ok, "nftables", {"status": "unknown", "reason": "nft: permission denied", "present": true})})

test_fail_egress_003_nftables_unknown if {
	fixtures.of_rule(egress.deny, "EGRESS-003") == {fixtures.expect_unknown(
		"EGRESS-003",
		"firewall.nftables could not be collected: nft: permission denied",
		"firewall.nftables",
		["/firewall/nftables"],
	)}
}

# ------------------------------------------------------------------ EGRESS-004 accept rules

input_success_egress_004_lo_replies_and_enclave := fixtures.compliant

test_success_egress_004_lo_replies_and_enclave if {
	count(fixtures.of_rule(egress.deny, "EGRESS-004")) == 0
}

input_success_egress_004_accept_in_unhooked_chain_ignored := fixtures.host_with({"firewall": nft_with({"rules": array.concat(
	fixtures.firewall_ok.nftables.rules,
	[fixtures.nft_rule("unused", "accept", [])],
)})})

test_success_egress_004_accept_in_unhooked_chain_ignored if {
	count(fixtures.of_rule(egress.deny, "EGRESS-004")) == 0
}

input_fail_egress_004_accept_beyond_enclave := fixtures.host_with({"firewall": nft_with({"rules": array.concat(
	fixtures.firewall_ok.nftables.rules,
	[fixtures.nft_rule("output", "accept", [fixtures.enclave_net, public_net])],
)})})

test_fail_egress_004_accept_beyond_enclave if {
	fixtures.of_rule(egress.deny, "EGRESS-004") == {fixtures.expect(
		"EGRESS-004",
		"nftables rule inet gapseal output handle 7 accepts outgoing traffic to 203.0.113.0/24, outside the enclave",
		"inet gapseal output handle 7",
		["/firewall/nftables/rules/3"],
	)}
}

extra_chain := {
	"family": "inet", "table": "gapseal", "name": "extra", "type": null, "hook": null,
	"priority": null, "policy": null, "rule_count": 1,
}

input_fail_egress_004_accept_anything_in_jumped_chain := fixtures.host_with({"firewall": nft_with({
	"rules": array.concat(fixtures.firewall_ok.nftables.rules, [
		fixtures.with_keys(fixtures.nft_rule("output", "jump", []), {"target": "extra"}),
		fixtures.nft_rule("extra", "accept", []),
	]),
	"chains": array.concat(fixtures.firewall_ok.nftables.chains, [extra_chain]),
})})

test_fail_egress_004_accept_anything_in_jumped_chain if {
	fixtures.of_rule(egress.deny, "EGRESS-004") == {fixtures.expect(
		"EGRESS-004",
		"nftables rule inet gapseal extra handle 7 accepts outgoing traffic to any destination",
		"inet gapseal extra handle 7",
		["/firewall/nftables/rules/4"],
	)}
}

input_fail_egress_004_negated_match := fixtures.host_with({"firewall": nft_with({"rules": array.concat(
	fixtures.firewall_ok.nftables.rules,
	[fixtures.with_keys(fixtures.nft_rule("output", "accept", [fixtures.enclave_net]), {"negated": true})],
)})})

test_fail_egress_004_negated_match if {
	fixtures.of_rule(egress.deny, "EGRESS-004") == {fixtures.expect(
		"EGRESS-004",
		"nftables rule inet gapseal output handle 7 has negated or unparsed matches, so where it accepts traffic to cannot be verified",
		"inet gapseal output handle 7",
		["/firewall/nftables/rules/3"],
	)}
}

input_fail_egress_004_oifname_not_lo := fixtures.host_with({"firewall": nft_with({"rules": array.concat(
	fixtures.firewall_ok.nftables.rules,
	[fixtures.with_keys(fixtures.nft_rule("output", "accept", []), {"oifname": ["lo", "eth0"]})],
)})})

test_fail_egress_004_oifname_not_lo if {
	fixtures.of_rule(egress.deny, "EGRESS-004") == {fixtures.expect(
		"EGRESS-004",
		"nftables rule inet gapseal output handle 7 accepts outgoing traffic to any destination",
		"inet gapseal output handle 7",
		["/firewall/nftables/rules/3"],
	)}
}

# gapseal's evaluator annotates networks with enclave: true|false; the annotation decides for accept rules too.
input_fail_egress_004_evaluator_annotation := fixtures.host_with({"firewall": nft_with({"rules": array.concat(
	fixtures.firewall_ok.nftables.rules,
	[fixtures.nft_rule("output", "accept", [fixtures.with_keys(fixtures.enclave_net, {"enclave": false})])],
)})})

test_fail_egress_004_evaluator_annotation if {
	fixtures.of_rule(egress.deny, "EGRESS-004") == {fixtures.expect(
		"EGRESS-004",
		"nftables rule inet gapseal output handle 7 accepts outgoing traffic to 10.231.1.0/30, outside the enclave",
		"inet gapseal output handle 7",
		["/firewall/nftables/rules/3"],
	)}
}

input_success_egress_004_neighbour_discovery_only := fixtures.host_with({"firewall": nft_with({"rules": array.concat(
	fixtures.firewall_ok.nftables.rules,
	[fixtures.with_keys(
		fixtures.nft_rule("output", "accept", []),
		{"icmpv6_types": ["nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-solicit"]},
	)],
)})})

test_success_egress_004_neighbour_discovery_only if {
	count(fixtures.of_rule(egress.deny, "EGRESS-004")) == 0
}

input_fail_egress_004_icmpv6_echo_leaves_the_link := fixtures.host_with({"firewall": nft_with({"rules": array.concat(
	fixtures.firewall_ok.nftables.rules,
	[fixtures.with_keys(
		fixtures.nft_rule("output", "accept", []),
		{"icmpv6_types": ["nd-neighbor-solicit", "echo-request"]},
	)],
)})})

test_fail_egress_004_icmpv6_echo_leaves_the_link if {
	fixtures.of_rule(egress.deny, "EGRESS-004") == {fixtures.expect(
		"EGRESS-004",
		"nftables rule inet gapseal output handle 7 accepts outgoing traffic to any destination",
		"inet gapseal output handle 7",
		["/firewall/nftables/rules/3"],
	)}
}

input_fail_egress_004_nftables_unknown := fixtures.host_with({"firewall": fixtures.with_key(fixtures.firewall_ok, "nftables", {"status": "unknown", "reason": "nft missing", "present": false})})

test_fail_egress_004_nftables_unknown if {
	fixtures.of_rule(egress.deny, "EGRESS-004") == {fixtures.expect_unknown(
		"EGRESS-004", "firewall.nftables could not be collected: nft missing", "firewall.nftables", ["/firewall/nftables"],
	)}
}

# ------------------------------------------------------------------ EGRESS-005 probes

leaky_probe := {
	"kind": "udp_connect", "target": "203.0.113.1:53", "family": "inet", "active": false, "outcome": "routed",
	"egress_possible": true, "detail": "source 10.231.1.2", "errno": null,
}

input_success_egress_005_unreachable := fixtures.compliant

test_success_egress_005_unreachable if {
	count(fixtures.of_rule(egress.deny, "EGRESS-005")) == 0
}

input_fail_egress_005_probe_routed := fixtures.host_with({"probes": fixtures.with_keys(fixtures.probes_ok, {
	"probes": array.concat(fixtures.probes_ok.probes, [leaky_probe]),
	"egress_possible": true,
})})

test_fail_egress_005_probe_routed if {
	fixtures.of_rule(egress.deny, "EGRESS-005") == {fixtures.expect(
		"EGRESS-005",
		"probe udp_connect 203.0.113.1:53 found a path off the host: routed (source 10.231.1.2)",
		"udp_connect 203.0.113.1:53",
		["/probes/probes/1"],
	)}
}

input_fail_egress_005_probes_unknown := fixtures.host_with({"probes": fixtures.unknown_domain("socket() failed: EPERM")})

test_fail_egress_005_probes_unknown if {
	fixtures.of_rule(egress.deny, "EGRESS-005") == {fixtures.expect_unknown(
		"EGRESS-005", "probes could not be collected: socket() failed: EPERM", "probes", ["/probes"],
	)}
}

# ------------------------------------------------------------------ EGRESS-006 proxies

proxy_setting := {
	"variable": "HTTPS_PROXY", "name": "https_proxy", "value": "http://***@proxy.example:3128",
	"is_exclusion": false, "origin": "process", "location": "pid:31",
}

leaky_proxy := {"status": "ok", "reason": null, "settings": [proxy_setting], "proxies": [proxy_setting]}

input_success_egress_006_allowlisted_proxy := fixtures.host_with({"proxy": leaky_proxy})

test_success_egress_006_allowlisted_proxy if {
	count(fixtures.of_rule(egress.deny, "EGRESS-006")) == 0 with data.allowlist.proxies as ["http://***@proxy.example:3128"]
}

input_fail_egress_006_proxy_variable := fixtures.host_with({"proxy": leaky_proxy})

test_fail_egress_006_proxy_variable if {
	fixtures.of_rule(egress.deny, "EGRESS-006") == {fixtures.expect(
		"EGRESS-006",
		"proxy variable HTTPS_PROXY=http://***@proxy.example:3128 is set in pid:31 (process)",
		"HTTPS_PROXY",
		["/proxy/proxies/0"],
	)}
}

input_fail_egress_006_proxy_unknown := fixtures.host_with({"proxy": fixtures.unknown_domain("")})

test_fail_egress_006_proxy_unknown if {
	fixtures.of_rule(egress.deny, "EGRESS-006") == {fixtures.expect_unknown(
		"EGRESS-006", "proxy could not be collected: no reason recorded", "proxy", ["/proxy"],
	)}
}

# ------------------------------------------------------------------ EGRESS-007 resolvers

outside_resolver := {"address": "198.51.100.53", "address_class": "documentation", "origin": "resolved.conf:FallbackDNS"}

leaky_dns := fixtures.with_keys(fixtures.dns_ok, {"nameservers": [fixtures.dns_ok.nameservers[0], outside_resolver]})

input_success_egress_007_internal_resolver := fixtures.host_with({"dns": leaky_dns})

test_success_egress_007_internal_resolver if {
	count(fixtures.of_rule(egress.deny, "EGRESS-007")) == 0 with data.allowlist.resolvers as ["198.51.100.53"]
}

input_fail_egress_007_outside_resolver := fixtures.host_with({"dns": leaky_dns})

test_fail_egress_007_outside_resolver if {
	fixtures.of_rule(egress.deny, "EGRESS-007") == {fixtures.expect(
		"EGRESS-007",
		"nameserver 198.51.100.53 (resolved.conf:FallbackDNS) is not an internal resolver",
		"198.51.100.53",
		["/dns/nameservers/1"],
	)}
}

input_fail_egress_007_dns_unknown := fixtures.host_with({"dns": fixtures.unknown_domain("resolv.conf unreadable")})

test_fail_egress_007_dns_unknown if {
	fixtures.of_rule(egress.deny, "EGRESS-007") == {fixtures.expect_unknown(
		"EGRESS-007", "dns could not be collected: resolv.conf unreadable", "dns", ["/dns"],
	)}
}
