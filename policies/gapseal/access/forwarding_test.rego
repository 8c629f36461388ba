# Tests of ACCESS-004 (sshd forwarding and tunnels). Each test_<name> runs with input_<name> as its input.
package gapseal.access_forwarding_test

import data.gapseal.access
import data.gapseal.fixtures

_ssh(forwarding) := fixtures.with_keys(fixtures.ssh_ok, {"forwarding": forwarding})

_open_settings := {
	"allowtcpforwarding": "yes", "allowstreamlocalforwarding": "yes", "permittunnel": "yes", "gatewayports": "yes",
	"permitopen": "any", "permitlisten": "any", "disableforwarding": "no",
}

input_success_access_004_all_closed := fixtures.compliant

test_success_access_004_all_closed if {
	count(fixtures.of_rule(access.deny, "ACCESS-004")) == 0
}

input_success_access_004_closed_match_block := fixtures.host_with({"ssh": _ssh([
	fixtures.ssh_forwarding("global", false, false, false, false),
	fixtures.ssh_forwarding("Match User alice", false, false, false, false),
])})

test_success_access_004_closed_match_block if {
	count(fixtures.of_rule(access.deny, "ACCESS-004")) == 0
}

input_success_access_004_no_sshd := fixtures.host_with({"ssh": {
	"status": "ok", "reason": null, "present": false, "method": "none", "forwarding": [],
}})

test_success_access_004_no_sshd if {
	count(fixtures.of_rule(access.deny, "ACCESS-004")) == 0
}

input_fail_access_004_default_sshd := fixtures.host_with({"ssh": _ssh([fixtures.with_keys(
	fixtures.ssh_forwarding("global", true, true, false, false),
	{"settings": fixtures.with_keys(_open_settings, {"permittunnel": "no", "gatewayports": "no"})},
)])})

test_fail_access_004_default_sshd if {
	access.deny == {
		fixtures.expect(
			"ACCESS-004",
			concat("", [
				"sshd (global) allows TCP forwarding (allowtcpforwarding yes, permitopen any, permitlisten any, ",
				"disableforwarding no): an operator can tunnel data out of the enclave",
			]),
			"global: TCP forwarding",
			["/ssh/forwarding/0"],
		),
		fixtures.expect(
			"ACCESS-004",
			concat("", [
				"sshd (global) allows Unix-socket forwarding (allowstreamlocalforwarding yes, disableforwarding no): ",
				"an operator can tunnel data out of the enclave",
			]),
			"global: Unix-socket forwarding",
			["/ssh/forwarding/0"],
		),
	}
}

input_fail_access_004_match_block_tunnel := fixtures.host_with({"ssh": _ssh([
	fixtures.ssh_forwarding("global", false, false, false, false),
	fixtures.with_keys(
		fixtures.ssh_forwarding("Match User ops", false, false, true, false),
		{"settings": fixtures.with_keys(fixtures.ssh_forwarding("x", false, false, false, false).settings, {"permittunnel": "yes"})},
	),
])})

test_fail_access_004_match_block_tunnel if {
	access.deny == {fixtures.expect(
		"ACCESS-004",
		"sshd (Match User ops) allows tun/tap tunnels (permittunnel yes): an operator can tunnel data out of the enclave",
		"Match User ops: tun/tap tunnels",
		["/ssh/forwarding/1"],
	)}
}

input_fail_access_004_gateway_ports := fixtures.host_with({"ssh": _ssh([fixtures.with_keys(
	fixtures.ssh_forwarding("global", false, false, false, true),
	{"settings": fixtures.with_keys(_open_settings, {"allowtcpforwarding": "remote"})},
)])})

test_fail_access_004_gateway_ports if {
	access.deny == {fixtures.expect(
		"ACCESS-004",
		concat("", [
			"sshd (global) allows remote forwards on public addresses (gatewayports yes, allowtcpforwarding remote): ",
			"an operator can tunnel data out of the enclave",
		]),
		"global: remote forwards on public addresses",
		["/ssh/forwarding/0"],
	)}
}

input_fail_access_004_not_collected := fixtures.host_with({"ssh": _ssh([])})

test_fail_access_004_not_collected if {
	access.deny == {fixtures.expect_unknown(
		"ACCESS-004",
		"sshd is present but its forwarding settings were not collected",
		"ssh",
		["/ssh"],
	)}
}

input_fail_access_004_unknown := fixtures.host_with({"ssh": fixtures.unknown_domain("sshd -T failed")})

test_fail_access_004_unknown if {
	fixtures.of_rule(access.deny, "ACCESS-004") == {fixtures.expect_unknown(
		"ACCESS-004", "ssh could not be collected: sshd -T failed", "ssh", ["/ssh"],
	)}
}
