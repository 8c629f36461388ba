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

# ------------------------------------------------------------------ EGRESS-003 the outside is dropped

egress_with(changes) := fixtures.with_key(fixtures.firewall_ok, "egress", fixtures.with_keys(fixtures.egress_ok, changes))

doc_net := fixtures.net("203.0.113.1/32", "inet", 32, "cb007101", "cb007101", "documentation")

dormant_accept := ["nftables inet gapseal output: table is dormant"]

input_success_egress_003_outside_dropped := fixtures.compliant

test_success_egress_003_outside_dropped if {
	count(fixtures.of_rule(egress.deny, "EGRESS-003")) == 0
}

# The lockdown table is dormant: the kernel runs none of its chains, so the outside is reachable.
input_fail_egress_003_dormant_table := fixtures.host_with({"firewall": egress_with({"probes": [
	fixtures.egress_answer("inet", "tcp", [doc_net], ["1-65535"], "accept", dormant_accept),
	fixtures.egress_answer("inet", "udp", [doc_net], ["1-65535"], "drop", fixtures.drop_policy),
]})})

test_fail_egress_003_dormant_table if {
	fixtures.of_rule(egress.deny, "EGRESS-003") == {fixtures.expect(
		"EGRESS-003",
		"tcp to 203.0.113.1/32 port 1-65535 leaves the host: accepted by nftables inet gapseal output: table is dormant",
		"tcp to 203.0.113.1/32 port 1-65535",
		["/firewall/egress/probes/0"],
	)}
}

input_fail_egress_003_unknown_rule := fixtures.host_with({"firewall": egress_with({"probes": [fixtures.egress_answer(
	"inet", "icmp", [doc_net], [], "unknown",
	["nftables inet gapseal output: meta l4proto icmp queue num 3 # handle 9"],
)]})})

test_fail_egress_003_unknown_rule if {
	fixtures.of_rule(egress.deny, "EGRESS-003") == {fixtures.expect_unknown(
		"EGRESS-003",
		"cannot tell whether icmp to 203.0.113.1/32 is dropped: it depends on what gapseal does not understand: nftables inet gapseal output: meta l4proto icmp queue num 3 # handle 9",
		"icmp to 203.0.113.1/32",
		["/firewall/egress/probes/0"],
	)}
}

input_fail_egress_003_not_evaluated := fixtures.host_with({"firewall": fixtures.with_key(fixtures.firewall_ok, "egress", null)})

test_fail_egress_003_not_evaluated if {
	fixtures.of_rule(egress.deny, "EGRESS-003") == {fixtures.expect_unknown(
		"EGRESS-003", "firewall.egress could not be collected: no reason recorded", "firewall.egress", ["/firewall/egress"],
	)}
}

input_fail_egress_003_evaluation_unknown := fixtures.host_with({"firewall": egress_with({
	"status": "unknown", "reason": "the nftables ruleset could not be read",
})})

test_fail_egress_003_evaluation_unknown if {
	fixtures.of_rule(egress.deny, "EGRESS-003") == {fixtures.expect_unknown(
		"EGRESS-003",
		"firewall.egress could not be collected: the nftables ruleset could not be read",
		"firewall.egress",
		["/firewall/egress"],
	)}
}

# ------------------------------------------------------------------ EGRESS-004 accepted only towards the enclave

outside_net := fixtures.net("198.51.100.0/24", "inet", 24, "c6336400", "c63364ff", "documentation")

wide_net := fixtures.net("10.0.0.0/7", "inet", 7, "0a000000", "0bffffff", "private")

accept_outside := "nftables inet gapseal web: ip daddr 198.51.100.0/24 accept # handle 6"

input_success_egress_004_enclave_only := fixtures.compliant

test_success_egress_004_enclave_only if {
	count(fixtures.of_rule(egress.deny, "EGRESS-004")) == 0
}

input_fail_egress_004_outside_accepted := fixtures.host_with({"firewall": egress_with({"classes": array.concat(
	fixtures.egress_ok.classes,
	[fixtures.egress_answer("inet", "tcp", [outside_net], ["80"], "accept", [accept_outside])],
)})})

test_fail_egress_004_outside_accepted if {
	fixtures.of_rule(egress.deny, "EGRESS-004") == {fixtures.expect(
		"EGRESS-004",
		"tcp to 198.51.100.0/24 port 80 (outside the enclave) leaves the host: accepted by nftables inet gapseal web: ip daddr 198.51.100.0/24 accept # handle 6",
		"tcp to 198.51.100.0/24 port 80",
		["/firewall/egress/classes/1"],
	)}
}

# 10.0.0.0/7 covers the enclave's 10.0.0.0/8 and 11.0.0.0/8 beyond it: partly outside is outside.
input_fail_egress_004_partly_outside := fixtures.host_with({"firewall": egress_with({"classes": [
	fixtures.egress_answer("inet", "udp", [fixtures.enclave_net, wide_net], ["53"], "accept", ["iptables-legacy filter OUTPUT: -A OUTPUT -d 10.0.0.0/7 -p udp -m udp --dport 53 -j ACCEPT"]),
]})})

test_fail_egress_004_partly_outside if {
	fixtures.of_rule(egress.deny, "EGRESS-004") == {fixtures.expect(
		"EGRESS-004",
		"udp to 10.0.0.0/7 port 53 (outside the enclave) leaves the host: accepted by iptables-legacy filter OUTPUT: -A OUTPUT -d 10.0.0.0/7 -p udp -m udp --dport 53 -j ACCEPT",
		"udp to 10.0.0.0/7 port 53",
		["/firewall/egress/classes/0"],
	)}
}

input_fail_egress_004_unknown_outside := fixtures.host_with({"firewall": egress_with({"classes": [
	fixtures.egress_answer("inet", "udp", [outside_net], ["1-65535"], "unknown", ["nftables inet gapseal output: udp dport 53 meta mark set 0x00000001 # handle 17"]),
]})})

test_fail_egress_004_unknown_outside if {
	fixtures.of_rule(egress.deny, "EGRESS-004") == {fixtures.expect_unknown(
		"EGRESS-004",
		"cannot tell whether udp to 198.51.100.0/24 port 1-65535 (outside the enclave) is dropped: it depends on what gapseal does not understand: nftables inet gapseal output: udp dport 53 meta mark set 0x00000001 # handle 17",
		"udp to 198.51.100.0/24 port 1-65535",
		["/firewall/egress/classes/0"],
	)}
}

# A rule that may send packets elsewhere (dnat): the evaluator adds a class of every destination, unknown, quoting it.
anywhere_net := fixtures.net("0.0.0.0/0", "inet", 0, "00000000", "ffffffff", "unspecified")

dnat_rule := "nftables ip nat out: ip daddr 10.9.9.10 dnat to 198.51.100.7 # handle 2"

input_fail_egress_004_rewritten_destination := fixtures.host_with({"firewall": egress_with({"classes": [
	fixtures.egress_answer("inet", "tcp", [fixtures.enclave_net], ["1-65535"], "accept", ["nftables inet lock out: ip daddr 10.0.0.0/8 accept # handle 3"]),
	fixtures.egress_answer("inet", "tcp", [anywhere_net], ["1-65535"], "unknown", [dnat_rule]),
]})})

test_fail_egress_004_rewritten_destination if {
	fixtures.of_rule(egress.deny, "EGRESS-004") == {fixtures.expect_unknown(
		"EGRESS-004",
		"cannot tell whether tcp to 0.0.0.0/0 port 1-65535 (outside the enclave) is dropped: it depends on what gapseal does not understand: nftables ip nat out: ip daddr 10.9.9.10 dnat to 198.51.100.7 # handle 2",
		"tcp to 0.0.0.0/0 port 1-65535",
		["/firewall/egress/classes/1"],
	)}
}

# Not understood, but only for enclave destinations: nothing the policy forbids can follow from it.
input_success_egress_004_unknown_inside_enclave := fixtures.host_with({"firewall": egress_with({"classes": [
	fixtures.egress_answer("inet", "udp", [fixtures.enclave_net], ["1-65535"], "unknown", ["nftables inet gapseal output: limit rate 5/second accept # handle 3"]),
]})})

test_success_egress_004_unknown_inside_enclave if {
	count(fixtures.of_rule(egress.deny, "EGRESS-004")) == 0
}

# gapseal's evaluator annotates networks with enclave: true|false; the annotation decides.
input_fail_egress_004_evaluator_annotation := fixtures.host_with({"firewall": egress_with({"classes": [
	fixtures.egress_answer("inet", "tcp", [fixtures.with_keys(fixtures.enclave_net, {"enclave": false})], ["22"], "accept", ["x"]),
]})})

test_fail_egress_004_evaluator_annotation if {
	fixtures.of_rule(egress.deny, "EGRESS-004") == {fixtures.expect(
		"EGRESS-004",
		"tcp to 10.231.1.0/30 port 22 (outside the enclave) leaves the host: accepted by x",
		"tcp to 10.231.1.0/30 port 22",
		["/firewall/egress/classes/0"],
	)}
}

# The enclave is the site's: narrowed, the same accept is outside it.
input_fail_egress_004_enclave_narrowed := fixtures.compliant

test_fail_egress_004_enclave_narrowed if {
	narrowed := [{"cidr": "10.99.0.0/16", "family": "inet", "prefixlen": 16, "first": "0a630000", "last": "0a63ffff"}]
	count(fixtures.of_rule(egress.deny, "EGRESS-004")) == 1 with data.allowlist.enclave_networks as narrowed
}

input_fail_egress_004_evaluation_unknown := fixtures.host_with({"firewall": egress_with({"status": "unknown", "reason": "nft: permission denied"})})

test_fail_egress_004_evaluation_unknown if {
	fixtures.of_rule(egress.deny, "EGRESS-004") == {fixtures.expect_unknown(
		"EGRESS-004", "firewall.egress could not be collected: nft: permission denied", "firewall.egress", ["/firewall/egress"],
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
