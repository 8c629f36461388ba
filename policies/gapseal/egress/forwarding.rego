# Forwarding: a host that routes packets for others (containers on a bridge, VMs, enclave hosts) is a way out
# its output chain never sees. input.routes.ip_forwarding says whether the kernel forwards each family;
# input.firewall.forward is gapseal's netfilter evaluator answering for packets arriving on any non-loopback
# interface (prerouting, forward and postrouting hooks, the route deciding the output interface).
package gapseal.egress

import data.gapseal.lib

# METADATA
# title: Forwarded traffic to the outside is dropped
# description: >-
#   Where the host forwards packets (net.ipv4.conf.<interface>.forwarding on for a non-loopback interface,
#   net.ipv6.conf.all.forwarding on), no class of destinations outside the enclave (data.allowlist.enclave) is
#   accepted for NEW packets arriving on any non-loopback interface, as netfilter evaluates the whole ruleset on
#   the prerouting, forward and postrouting hooks. A host whose forwarding is off passes; a host whose
#   forwarding settings could not be read passes only if its forward path provably drops. A verdict that depends
#   on a rule gapseal does not understand (dnat in prerouting included) is reported as unknown, quoting the rule.
# custom:
#   id: EGRESS-012
#   severity: high
#   remediation: >-
#     Turn forwarding off (sysctl -w net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0, and the same in
#     /etc/sysctl.d), or, where containers or VMs need it, add a forward filter chain whose policy is drop, e.g.
#     table inet gapseal_forward { chain forward { type filter hook forward priority 0; policy drop;
#     ip daddr <enclave> accept } }, and restrict the accept rule the finding quotes to enclave destinations.
#   controls: [eu-ai-act:art-15, hipaa:164.312(e)(1)]
deny contains violation if {
	_forward_evaluated
	some i, answer in input.firewall.forward.classes
	answer.verdict == "accept"
	_forwarding_on(answer.family)
	outside := _outside(answer)
	count(outside) > 0
	subject := concat("", ["forwarded ", answer_text(answer, outside)])
	violation := lib.violation(
		"EGRESS-012",
		concat("", [
			subject, " (outside the enclave) passes through the host (", _forwarding_text(answer.family), "): ",
			decided_text(answer),
		]),
		subject,
		[lib.pointer(["firewall", "forward", "classes", i]), "/routes/ip_forwarding"],
	)
}

deny contains violation if {
	_forward_evaluated
	some i, answer in input.firewall.forward.classes
	answer.verdict == "unknown"
	_forwarding_on(answer.family)
	outside := _outside(answer)
	count(outside) > 0
	subject := concat("", ["forwarded ", answer_text(answer, outside)])
	violation := lib.undetermined(
		"EGRESS-012",
		concat("", [
			"cannot tell whether ", subject, " (outside the enclave) is dropped (", _forwarding_text(answer.family),
			"): ", decided_text(answer),
		]),
		subject,
		[lib.pointer(["firewall", "forward", "classes", i]), "/routes/ip_forwarding"],
	)
}

deny contains violation if {
	_forward_evaluated
	some i, answer in input.firewall.forward.classes
	answer.verdict in {"accept", "unknown"}
	not _forwarding_known(answer.family)
	outside := _outside(answer)
	count(outside) > 0
	subject := concat("", ["forwarded ", answer_text(answer, outside)])
	violation := lib.undetermined(
		"EGRESS-012",
		concat("", [
			"cannot tell whether ", _family_words[answer.family], " forwarding is on (",
			lib.reason(object.get(input, ["routes", "ip_forwarding"], {})), ") and ", subject,
			" (outside the enclave) is not dropped: ", decided_text(answer),
		]),
		subject,
		[lib.pointer(["firewall", "forward", "classes", i]), "/routes/ip_forwarding"],
	)
}

deny contains violation if {
	not _forward_evaluated
	some family in ["inet", "inet6"]
	not _forwarding_off(family)
	violation := lib.unknown("EGRESS-012", "firewall.forward")
}

_forward_evaluated if input.firewall.forward.status == "ok"

_forwarding_on(family) if input.routes.ip_forwarding[family] == true

_forwarding_off(family) if input.routes.ip_forwarding[family] == false

_forwarding_known(family) if is_boolean(input.routes.ip_forwarding[family])

# "IPv4 forwarding on for enc0, out0 (net.ipv4.conf.<interface>.forwarding)"
_forwarding_text(family) := concat("", [
	_family_words[family], " forwarding on for ",
	concat(", ", object.get(input.routes.ip_forwarding, ["interfaces", family], [])),
	" (", _sysctl[family], ")",
])

_family_words := {"inet": "IPv4", "inet6": "IPv6"}

_sysctl := {"inet": "net.ipv4.conf.<interface>.forwarding", "inet6": "net.ipv6.conf.all.forwarding"}
