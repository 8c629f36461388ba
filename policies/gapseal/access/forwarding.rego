# Access: sshd gives operators no tunnel out of the enclave.
package gapseal.access

import data.gapseal.lib

# METADATA
# title: SSH allows no forwarding or tunnels
# description: >-
#   In every context sshd applies (the global settings and each Match block), TCP forwarding (AllowTcpForwarding,
#   unless PermitOpen and PermitListen are both none), Unix-socket forwarding (AllowStreamLocalForwarding),
#   tun/tap tunnels (PermitTunnel) and publicly bound remote forwards (GatewayPorts) are off, or DisableForwarding
#   is yes. sshd's defaults allow TCP and socket forwarding, so a default sshd on an enclave host lets any
#   operator tunnel data out. Hosts without sshd pass.
# custom:
#   id: ACCESS-004
#   severity: high
#   remediation: >-
#     Set DisableForwarding yes and PermitTunnel no in sshd_config (before any Match block), remove Match blocks
#     that turn forwarding back on, and reload sshd.
#   controls: [eu-ai-act:art-15, hipaa:164.312(e)(1), hipaa:164.312(a)(1)]
deny contains violation if {
	input.ssh.status == "ok"
	input.ssh.present == true
	some i, ctx in input.ssh.forwarding
	some field, what in _channels
	ctx[field] == true
	keys := _keys[field]
	violation := lib.violation(
		"ACCESS-004",
		concat("", [
			"sshd (", ctx.context, ") allows ", what, " (", _shown(ctx.settings, keys), "): an operator can ",
			"tunnel data out of the enclave",
		]),
		concat(": ", [ctx.context, what]),
		[lib.pointer(["ssh", "forwarding", i])],
	)
}

deny contains violation if {
	input.ssh.status == "ok"
	input.ssh.present == true
	count(object.get(input.ssh, "forwarding", [])) == 0
	violation := lib.undetermined(
		"ACCESS-004",
		"sshd is present but its forwarding settings were not collected",
		"ssh",
		["/ssh"],
	)
}

deny contains violation if {
	not input.ssh.status == "ok"
	violation := lib.unknown("ACCESS-004", "ssh")
}

# facts field -> what it lets through
_channels := {
	"tcp_forwarding": "TCP forwarding",
	"streamlocal_forwarding": "Unix-socket forwarding",
	"tunnel": "tun/tap tunnels",
	"gateway_ports": "remote forwards on public addresses",
}

# The settings behind each channel, as the finding shows them.
_keys := {
	"tcp_forwarding": ["allowtcpforwarding", "permitopen", "permitlisten", "disableforwarding"],
	"streamlocal_forwarding": ["allowstreamlocalforwarding", "disableforwarding"],
	"tunnel": ["permittunnel"],
	"gateway_ports": ["gatewayports", "allowtcpforwarding"],
}

# (Written this way for regopy 1.5: with the value inline in the comprehension's head it yields an empty array,
# and with _keys[field] inside the comprehension it iterates every key list.)
_shown(settings, keys) := concat(", ", [s | some k in keys; s := concat(" ", [k, lib.text(object.get(settings, k, null))])])
