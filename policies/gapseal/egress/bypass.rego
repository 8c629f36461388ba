# Paths out that never pass the host's IP netfilter hooks, so no output or forward chain (EGRESS-003, -004, -012)
# governs them: other network namespaces of the host with a way out of their own, bridges that carry an uplink
# beside other ports, and packet sockets. input.datapath is what the collector found (gapseal/audit/facts.py,
# DatapathFacts).
package gapseal.egress

import data.gapseal.lib

# METADATA
# title: No network namespace of the host has a way out of its own
# description: >-
#   Every other network namespace of the host (containers, `ip netns` names, processes' namespaces) reaches the
#   network only through the audited namespace: it holds no interface but loopback, bridges, dummies and veths
#   whose peer is the audited namespace or another such namespace. A macvlan, ipvlan or VLAN on the host's NIC, a
#   physical NIC moved into the namespace or a veth to a namespace that is not the host's sends packets the host's
#   output and forward chains never see. A namespace that could not be entered is reported as unknown.
# custom:
#   id: EGRESS-013
#   severity: high
#   remediation: >-
#     Remove the interface the finding names from the namespace (ip -n <ns> link del <if>), or give the container a
#     veth into the host (a routed or bridged network whose forward path the host filters, EGRESS-012, EGRESS-014)
#     instead of a macvlan, ipvlan or a NIC of its own; where such a namespace is required, give it an output
#     chain with policy drop and waive this rule for the host with the justification.
#   controls: [eu-ai-act:art-15, hipaa:164.312(e)(1)]
deny contains violation if {
	input.datapath.status == "ok"
	some i, ns in input.datapath.namespaces
	ns.attached == true
	ns.status == "ok"
	count(ns.ways_out) > 0
	subject := concat("", ["network namespace ", _ns_text(ns)])
	violation := lib.violation(
		"EGRESS-013",
		concat("", [
			subject, " has a way out that bypasses the host's netfilter hooks: ", concat(", ", ns.ways_out),
		]),
		subject,
		[lib.pointer(["datapath", "namespaces", i])],
	)
}

deny contains violation if {
	input.datapath.status == "ok"
	some i, ns in input.datapath.namespaces
	ns.attached == true
	ns.status != "ok"
	subject := concat("", ["network namespace ", _ns_text(ns)])
	violation := lib.undetermined(
		"EGRESS-013",
		concat("", ["cannot tell whether ", subject, " has a way out of its own: ", lib.reason(ns)]),
		subject,
		[lib.pointer(["datapath", "namespaces", i])],
	)
}

deny contains violation if {
	input.datapath.status == "ok"
	input.datapath.namespaces_status != "ok"
	violation := lib.undetermined(
		"EGRESS-013",
		concat("", [
			"cannot tell which network namespaces the host has: ",
			lib.text(object.get(input.datapath, "namespaces_reason", null)),
		]),
		"datapath.namespaces",
		["/datapath/namespaces_status"],
	)
}

deny contains violation if {
	not input.datapath.status == "ok"
	violation := lib.unknown("EGRESS-013", "datapath")
}

# "net:[4026532446] (ip netns c1; pids 41 sleep)"
_ns_text(ns) := concat("", [ns.netns, " (", concat("; ", _ns_parts(ns)), ")"]) if {
	count(_ns_parts(ns)) > 0
} else := ns.netns

_ns_parts(ns) := array.concat(_ns_names(ns), _ns_pids(ns))

_ns_names(ns) := [concat("", ["ip netns ", concat(", ", ns.names)])] if {
	count(ns.names) > 0
} else := []

_ns_pids(ns) := [concat("", ["pids ", concat(", ", _pid_texts(ns))])] if {
	count(ns.pids) > 0
} else := []

# (regopy: index variables must come from a collection, `some j` alone yields nothing)
_pid_texts(ns) := [x |
	some j in numbers.range(0, count(ns.pids) - 1)
	x := concat(" ", [lib.text(ns.pids[j]), ns.comms[j]])
]

# METADATA
# title: No bridge carries an uplink beside other ports
# description: >-
#   No bridge of the host enslaves an uplink (a port other than a veth to a namespace of the host without a way out
#   of its own) together with other ports: frames between the ports are bridged, not routed, so the inet forward
#   hook sees them only through br_netfilter (bridge-nf-call-iptables/-ip6tables), and ARP and every other non-IP
#   frame never. Whatever is attached (containers, VMs) reaches the uplink's network directly.
# custom:
#   id: EGRESS-014
#   severity: high
#   remediation: >-
#     Take the uplink out of the bridge (ip link set <uplink> nomaster) and route the attached containers or VMs
#     through the host instead, so the forward chain governs them (EGRESS-012); where a bridged uplink is required,
#     filter it with an nftables bridge-family forward chain whose policy is drop and waive this rule for the host
#     with the justification.
#   controls: [eu-ai-act:art-15, hipaa:164.312(e)(1)]
deny contains violation if {
	input.datapath.status == "ok"
	some i, bridge in input.datapath.bridges
	count(bridge.uplink_ports) > 0
	count(bridge.other_ports) > 0
	subject := concat("", ["bridge ", bridge.name])
	violation := lib.violation(
		"EGRESS-014",
		concat("", [
			subject, " bridges uplink ", concat(", ", bridge.uplink_ports), " with ", concat(", ", bridge.other_ports),
			": frames between them bypass the IP hooks (", _br_netfilter_text, ")",
		]),
		subject,
		[lib.pointer(["datapath", "bridges", i]), "/datapath/bridge_netfilter"],
	)
}

deny contains violation if {
	not input.datapath.status == "ok"
	violation := lib.unknown("EGRESS-014", "datapath")
}

_br_netfilter_text := "br_netfilter not loaded" if {
	not input.datapath.bridge_netfilter.loaded
} else := concat("", [
	"br_netfilter: bridge-nf-call-iptables ", lib.text(input.datapath.bridge_netfilter.call_iptables),
	", bridge-nf-call-ip6tables ", lib.text(input.datapath.bridge_netfilter.call_ip6tables),
	"; non-IP frames are never filtered",
])

# METADATA
# title: No process holds a packet socket
# description: >-
#   No process of the host holds an AF_PACKET socket (/proc/net/packet): frames written to one leave by the
#   interface directly, below the IP hooks where the output chain would drop them. DHCP clients (dhclient,
#   systemd-networkd), LLDP agents and capture tools hold them legitimately; each is reported with its process
#   so a site can remove it or waive the rule for the host with a justification (e.g. a static address instead
#   of DHCP on an enclave network). A socket no process could be found for is reported too.
# custom:
#   id: EGRESS-015
#   severity: medium
#   remediation: >-
#     Stop the process the finding names or configure the interface statically (no DHCP client, no LLDP agent on an
#     air-gapped host); where it must run (e.g. DHCP from an enclave server), waive EGRESS-015 for the host, naming
#     the process and interface in the justification.
#   controls: [eu-ai-act:art-15, hipaa:164.312(e)(1)]
deny contains violation if {
	input.datapath.packet_sockets_status == "ok"
	some i, sock in input.datapath.packet_sockets
	subject := concat("", ["packet socket ", lib.text(sock.inode), " of ", _holders(sock)])
	violation := lib.violation(
		"EGRESS-015",
		concat("", [
			subject, " (", sock.type, ", ethertype 0x", sock.protocol, ", interface ", sock.interface,
			") sends frames below the IP hooks",
		]),
		subject,
		[lib.pointer(["datapath", "packet_sockets", i])],
	)
}

deny contains violation if {
	input.datapath.packet_sockets_status != "ok"
	violation := lib.undetermined(
		"EGRESS-015",
		concat("", [
			"cannot tell whether a process holds a packet socket: ",
			lib.text(object.get(input.datapath, "packet_sockets_reason", null)),
		]),
		"datapath.packet_sockets",
		["/datapath/packet_sockets_status"],
	)
}

deny contains violation if {
	not input.datapath.packet_sockets_status
	violation := lib.unknown("EGRESS-015", "datapath")
}

_holders(sock) := concat(", ", [concat("", [p.comm, " (pid ", lib.text(p.pid), ")"]) | some p in sock.processes]) if {
	count(sock.processes) > 0
} else := "no process found"
