# Tests of EGRESS-012 (forwarded traffic). Each test_<name> runs with input_<name> as its input.
package gapseal.egress_forwarding_test

import data.gapseal.egress
import data.gapseal.fixtures

forwarding_on := fixtures.with_keys(fixtures.forwarding_off, {
	"inet": true, "interfaces": {"inet": ["enc0", "podman0"], "inet6": []},
})

forwarding_unreadable := fixtures.with_keys(fixtures.forwarding_off, {
	"status": "unknown", "reason": "/proc/sys/net/ipv4/conf/enc0/forwarding: not readable", "inet": null,
})

host(forwarding, forward) := fixtures.host_with({
	"routes": fixtures.with_key(fixtures.routes_ok, "ip_forwarding", forwarding),
	"firewall": fixtures.with_key(fixtures.firewall_ok, "forward", forward),
})

forward(classes) := fixtures.with_key(fixtures.forward_open, "classes", classes)

outside := fixtures.net("198.51.100.0/24", "inet", 24, "c6336400", "c63364ff", "documentation")

fwd_drop := ["nftables inet fw forward: policy drop"]

accept_outside := fixtures.egress_answer(
	"inet", "tcp", [outside], ["1-65535"], "accept",
	["nftables inet fw forward: ip daddr 198.51.100.0/24 accept # handle 3"],
)

# a forward chain whose only accept is for the enclave
enclave_only := forward([fixtures.egress_answer(
	"inet", "tcp", [fixtures.enclave_net], ["1-65535"], "accept",
	["nftables inet fw forward: ip daddr 10.231.1.0/30 accept # handle 3"],
)])

not_understood := fixtures.egress_answer(
	"inet", "udp", [fixtures.public_v4], ["1-65535"], "unknown",
	["nftables inet fw forward: limit rate 10/second accept # handle 5"],
)

# ------------------------------------------------------------------ compliant

# forwarding off: an open forward path (the compliant fixture's) carries nothing
input_success_egress_012_forwarding_off := fixtures.compliant

test_success_egress_012_forwarding_off if {
	count(fixtures.of_rule(egress.deny, "EGRESS-012")) == 0
}

# forwarding on, but only enclave destinations pass the forward chain
input_success_egress_012_forward_chain_drops := host(forwarding_on, enclave_only)

test_success_egress_012_forward_chain_drops if {
	count(fixtures.of_rule(egress.deny, "EGRESS-012")) == 0
}

# forwarding off, and the forward path could not be evaluated: nothing is forwarded anyway
input_success_egress_012_forwarding_off_forward_unknown := host(
	fixtures.forwarding_off,
	fixtures.unknown_domain("the nftables ruleset could not be read"),
)

test_success_egress_012_forwarding_off_forward_unknown if {
	count(fixtures.of_rule(egress.deny, "EGRESS-012")) == 0
}

# settings unreadable, but the forward path provably drops everything outside
input_success_egress_012_forwarding_unreadable_forward_drops := host(forwarding_unreadable, enclave_only)

test_success_egress_012_forwarding_unreadable_forward_drops if {
	count(fixtures.of_rule(egress.deny, "EGRESS-012")) == 0
}

# IPv6 forwarding on, but only IPv4 is open on the forward path
input_success_egress_012_other_family := host(
	fixtures.with_keys(fixtures.forwarding_off, {"inet6": true, "interfaces": {"inet": [], "inet6": ["enc0"]}}),
	forward([accept_outside]),
)

test_success_egress_012_other_family if {
	count(fixtures.of_rule(egress.deny, "EGRESS-012")) == 0
}

# ------------------------------------------------------------------ findings

input_fail_egress_012_no_forward_chain := host(forwarding_on, fixtures.forward_open)

test_fail_egress_012_no_forward_chain if {
	fixtures.of_rule(egress.deny, "EGRESS-012") == {fixtures.expect(
		"EGRESS-012",
		concat("", [
			"forwarded tcp to 0.0.0.0/0 port 1-65535 (outside the enclave) passes through the host (IPv4 forwarding ",
			"on for enc0, podman0 (net.ipv4.conf.<interface>.forwarding)): accepted by no active base chain on the ",
			"prerouting, forward or postrouting hooks for ip packets",
		]),
		"forwarded tcp to 0.0.0.0/0 port 1-65535",
		["/firewall/forward/classes/0", "/routes/ip_forwarding"],
	)}
}

input_fail_egress_012_forward_accepts_outside := host(forwarding_on, forward([accept_outside]))

test_fail_egress_012_forward_accepts_outside if {
	fixtures.of_rule(egress.deny, "EGRESS-012") == {fixtures.expect(
		"EGRESS-012",
		concat("", [
			"forwarded tcp to 198.51.100.0/24 port 1-65535 (outside the enclave) passes through the host (IPv4 ",
			"forwarding on for enc0, podman0 (net.ipv4.conf.<interface>.forwarding)): accepted by nftables inet fw ",
			"forward: ip daddr 198.51.100.0/24 accept # handle 3",
		]),
		"forwarded tcp to 198.51.100.0/24 port 1-65535",
		["/firewall/forward/classes/0", "/routes/ip_forwarding"],
	)}
}

# the enclave allowlist decides what is outside, as for EGRESS-004
input_success_egress_012_allowlisted_destination := input_fail_egress_012_forward_accepts_outside

test_success_egress_012_allowlisted_destination if {
	count(fixtures.of_rule(egress.deny, "EGRESS-012")) == 0 with data.allowlist.enclave_networks as [outside]
}

input_fail_egress_012_rule_not_understood := host(forwarding_on, forward([not_understood]))

test_fail_egress_012_rule_not_understood if {
	fixtures.of_rule(egress.deny, "EGRESS-012") == {fixtures.expect_unknown(
		"EGRESS-012",
		concat("", [
			"cannot tell whether forwarded udp to 0.0.0.0/0 port 1-65535 (outside the enclave) is dropped (IPv4 ",
			"forwarding on for enc0, podman0 (net.ipv4.conf.<interface>.forwarding)): it depends on what gapseal does ",
			"not understand: nftables inet fw forward: limit rate 10/second accept # handle 5",
		]),
		"forwarded udp to 0.0.0.0/0 port 1-65535",
		["/firewall/forward/classes/0", "/routes/ip_forwarding"],
	)}
}

input_fail_egress_012_forwarding_unreadable := host(forwarding_unreadable, forward([accept_outside]))

test_fail_egress_012_forwarding_unreadable if {
	fixtures.of_rule(egress.deny, "EGRESS-012") == {fixtures.expect_unknown(
		"EGRESS-012",
		concat("", [
			"cannot tell whether IPv4 forwarding is on (/proc/sys/net/ipv4/conf/enc0/forwarding: not readable) and ",
			"forwarded tcp to 198.51.100.0/24 port 1-65535 (outside the enclave) is not dropped: accepted by ",
			"nftables inet fw forward: ip daddr 198.51.100.0/24 accept # handle 3",
		]),
		"forwarded tcp to 198.51.100.0/24 port 1-65535",
		["/firewall/forward/classes/0", "/routes/ip_forwarding"],
	)}
}

input_fail_egress_012_unknown := host(forwarding_on, fixtures.unknown_domain("the nftables ruleset could not be read"))

test_fail_egress_012_unknown if {
	fixtures.of_rule(egress.deny, "EGRESS-012") == {fixtures.expect_unknown(
		"EGRESS-012",
		"firewall.forward could not be collected: the nftables ruleset could not be read",
		"firewall.forward",
		["/firewall/forward"],
	)}
}

# facts from before forwarding was collected: neither the settings nor the forward path
input_fail_egress_012_missing := fixtures.host_with({
	"routes": object.remove(fixtures.routes_ok, ["ip_forwarding"]),
	"firewall": object.remove(fixtures.firewall_ok, ["forward"]),
})

test_fail_egress_012_missing if {
	fixtures.of_rule(egress.deny, "EGRESS-012") == {fixtures.expect_unknown(
		"EGRESS-012",
		"firewall.forward could not be collected: missing from the facts",
		"firewall.forward",
		["/firewall/forward"],
	)}
}
