# Tests of EGRESS-013 (namespaces with their own way out), EGRESS-014 (bridged uplinks), EGRESS-015 (packet
# sockets). Each test_<name> runs with input_<name> as its input.
package gapseal.egress_bypass_test

import data.gapseal.egress
import data.gapseal.fixtures

datapath(changes) := fixtures.host_with({"datapath": fixtures.with_keys(fixtures.datapath_ok, changes)})

macvlan_ns := fixtures.with_keys(fixtures.container_ns, {
	"names": ["c1"], "pids": [],
	"interfaces": [
		fixtures.netlink("lo", null, "loopback", null, null),
		fixtures.netlink("mv0", "macvlan", "ether", null, "net:[4026531840]"),
	],
	"ways_out": ["mv0 (macvlan on a device of net:[4026531840])"],
})

# a namespace of another host on the same machine (the collector was not in the initial namespace)
foreign_ns := fixtures.with_keys(macvlan_ns, {"netns": "net:[4026532600]", "attached": false})

unreadable_ns := fixtures.with_keys(fixtures.container_ns, {
	"status": "unknown", "reason": "/proc/41/ns/net: nsenter: exit 1", "interfaces": [],
})

bridged_uplink := {"name": "br0", "ports": ["enp1s0", "veth0"], "uplink_ports": ["enp1s0"], "other_ports": ["veth0"]}

container_bridge := {"name": "podman0", "ports": ["veth0", "veth1"], "uplink_ports": [], "other_ports": ["veth0", "veth1"]}

br_nf_on := {"loaded": true, "call_iptables": 1, "call_ip6tables": 1}

dhclient := {"pid": 612, "comm": "dhclient", "exe": "/usr/sbin/dhclient"}

packet_socket(processes) := {
	"inode": 23817, "type": "raw", "protocol": "0003", "interface": "enp1s0", "processes": processes,
}

# ------------------------------------------------------------------ compliant

# a container behind a veth into the host: its packets pass the host's forward hook
input_success_egress_013_container_behind_veth := fixtures.compliant

test_success_egress_013_container_behind_veth if {
	count(fixtures.of_rule(egress.deny, "EGRESS-013")) == 0
}

# a namespace of another host on the machine (not linked to the audited one) is not this host's
input_success_egress_013_namespace_of_another_host := datapath({"namespaces": [foreign_ns]})

test_success_egress_013_namespace_of_another_host if {
	count(fixtures.of_rule(egress.deny, "EGRESS-013")) == 0
}

# a bridge of container veths only: nothing bridged reaches an uplink
input_success_egress_014_bridge_without_uplink := datapath({"bridges": [container_bridge]})

test_success_egress_014_bridge_without_uplink if {
	count(fixtures.of_rule(egress.deny, "EGRESS-014")) == 0
}

# a bridge holding only the uplink bridges nothing: the host's own traffic passes its IP hooks on br0
input_success_egress_014_uplink_alone := datapath({"bridges": [fixtures.with_keys(bridged_uplink, {
	"ports": ["enp1s0"], "other_ports": [],
})]})

test_success_egress_014_uplink_alone if {
	count(fixtures.of_rule(egress.deny, "EGRESS-014")) == 0
}

input_success_egress_015_no_packet_socket := fixtures.compliant

test_success_egress_015_no_packet_socket if {
	count(fixtures.of_rule(egress.deny, "EGRESS-015")) == 0
}

# ------------------------------------------------------------------ findings

input_fail_egress_013_macvlan := datapath({"namespaces": [macvlan_ns]})

test_fail_egress_013_macvlan if {
	fixtures.of_rule(egress.deny, "EGRESS-013") == {fixtures.expect(
		"EGRESS-013",
		concat("", [
			"network namespace net:[4026532500] (ip netns c1) has a way out that bypasses the host's netfilter ",
			"hooks: mv0 (macvlan on a device of net:[4026531840])",
		]),
		"network namespace net:[4026532500] (ip netns c1)",
		["/datapath/namespaces/0"],
	)}
}

input_fail_egress_013_unreadable := datapath({"namespaces": [unreadable_ns]})

test_fail_egress_013_unreadable if {
	fixtures.of_rule(egress.deny, "EGRESS-013") == {fixtures.expect_unknown(
		"EGRESS-013",
		concat("", [
			"cannot tell whether network namespace net:[4026532500] (pids 41 sleep) has a way out of its own: ",
			"/proc/41/ns/net: nsenter: exit 1",
		]),
		"network namespace net:[4026532500] (pids 41 sleep)",
		["/datapath/namespaces/0"],
	)}
}

input_fail_egress_013_namespaces_unknown := datapath({
	"namespaces_status": "unknown", "namespaces_reason": "namespaces unreadable: /proc/1/ns/net: Permission denied",
})

test_fail_egress_013_namespaces_unknown if {
	fixtures.of_rule(egress.deny, "EGRESS-013") == {fixtures.expect_unknown(
		"EGRESS-013",
		"cannot tell which network namespaces the host has: namespaces unreadable: /proc/1/ns/net: Permission denied",
		"datapath.namespaces",
		["/datapath/namespaces_status"],
	)}
}

input_fail_egress_013_not_collected := fixtures.host_with({"datapath": fixtures.unknown_domain("not collected")})

test_fail_egress_013_not_collected if {
	fixtures.of_rule(egress.deny, "EGRESS-013") == {fixtures.expect_unknown(
		"EGRESS-013",
		"datapath could not be collected: not collected",
		"datapath",
		["/datapath"],
	)}
}

input_fail_egress_014_bridged_uplink := datapath({"bridges": [bridged_uplink]})

test_fail_egress_014_bridged_uplink if {
	fixtures.of_rule(egress.deny, "EGRESS-014") == {fixtures.expect(
		"EGRESS-014",
		"bridge br0 bridges uplink enp1s0 with veth0: frames between them bypass the IP hooks (br_netfilter not loaded)",
		"bridge br0",
		["/datapath/bridges/0", "/datapath/bridge_netfilter"],
	)}
}

# br_netfilter sends bridged IP frames to the IP hooks, but every other ethertype still passes
input_fail_egress_014_br_netfilter_on := datapath({"bridges": [bridged_uplink], "bridge_netfilter": br_nf_on})

test_fail_egress_014_br_netfilter_on if {
	fixtures.of_rule(egress.deny, "EGRESS-014") == {fixtures.expect(
		"EGRESS-014",
		concat("", [
			"bridge br0 bridges uplink enp1s0 with veth0: frames between them bypass the IP hooks (br_netfilter: ",
			"bridge-nf-call-iptables 1, bridge-nf-call-ip6tables 1; non-IP frames are never filtered)",
		]),
		"bridge br0",
		["/datapath/bridges/0", "/datapath/bridge_netfilter"],
	)}
}

input_fail_egress_014_unknown := input_fail_egress_013_not_collected

test_fail_egress_014_unknown if {
	fixtures.of_rule(egress.deny, "EGRESS-014") == {fixtures.expect_unknown(
		"EGRESS-014",
		"datapath could not be collected: not collected",
		"datapath",
		["/datapath"],
	)}
}

input_fail_egress_015_dhcp_client := datapath({"packet_sockets": [packet_socket([dhclient])]})

test_fail_egress_015_dhcp_client if {
	fixtures.of_rule(egress.deny, "EGRESS-015") == {fixtures.expect(
		"EGRESS-015",
		concat("", [
			"packet socket 23817 of dhclient (pid 612) (raw, ethertype 0x0003, interface enp1s0) sends frames below ",
			"the IP hooks",
		]),
		"packet socket 23817 of dhclient (pid 612)",
		["/datapath/packet_sockets/0"],
	)}
}

input_fail_egress_015_no_holder := datapath({"packet_sockets": [packet_socket([])]})

test_fail_egress_015_no_holder if {
	fixtures.of_rule(egress.deny, "EGRESS-015") == {fixtures.expect(
		"EGRESS-015",
		concat("", [
			"packet socket 23817 of no process found (raw, ethertype 0x0003, interface enp1s0) sends frames below ",
			"the IP hooks",
		]),
		"packet socket 23817 of no process found",
		["/datapath/packet_sockets/0"],
	)}
}

input_fail_egress_015_unreadable := datapath({
	"packet_sockets_status": "unknown", "packet_sockets_reason": "/proc/net/packet unreadable",
})

test_fail_egress_015_unreadable if {
	fixtures.of_rule(egress.deny, "EGRESS-015") == {fixtures.expect_unknown(
		"EGRESS-015",
		"cannot tell whether a process holds a packet socket: /proc/net/packet unreadable",
		"datapath.packet_sockets",
		["/datapath/packet_sockets_status"],
	)}
}

input_fail_egress_015_unknown := input_fail_egress_013_not_collected

test_fail_egress_015_unknown if {
	fixtures.of_rule(egress.deny, "EGRESS-015") == {fixtures.expect_unknown(
		"EGRESS-015",
		"datapath could not be collected: not collected",
		"datapath",
		["/datapath"],
	)}
}
