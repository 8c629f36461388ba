# Firewall: what the kernel does with NEW packets from this host, as gapseal's netfilter evaluator answered it
# (input.firewall.egress: every base chain of nftables, iptables-nft and iptables-legacy, dormant tables, jumps,
# verdict maps and sets evaluated together). These rules only decide which answers the policy allows.
package gapseal.egress

import data.gapseal.lib

# METADATA
# title: Outgoing traffic to the outside is dropped
# description: >-
#   NEW packets (tcp, udp and icmp, IPv4 and IPv6, every port) to the documentation addresses that stand for
#   "anywhere outside" (203.0.113.1, 198.51.100.1, 2001:db8::1) are dropped by some base chain, as netfilter
#   evaluates the whole ruleset (a dormant table drops nothing; an accept in one base chain does not override a
#   drop in another). A verdict that depends on a rule gapseal does not understand is reported as unknown.
# custom:
#   id: EGRESS-003
#   severity: high
#   remediation: >-
#     Load an nftables ruleset with an output filter chain whose policy is drop, e.g.
#     table inet gapseal { chain output { type filter hook output priority 0; policy drop; ... } }
#     (the installer's egress lockdown role writes one), and make sure its table is not dormant.
#   controls: [eu-ai-act:art-15, hipaa:164.312(e)(1)]
deny contains violation if {
	_egress_evaluated
	some i, answer in input.firewall.egress.probes
	answer.verdict == "accept"
	subject := answer_text(answer, answer.destinations)
	violation := lib.violation(
		"EGRESS-003",
		concat("", [subject, " leaves the host: ", decided_text(answer)]),
		subject,
		[lib.pointer(["firewall", "egress", "probes", i])],
	)
}

deny contains violation if {
	_egress_evaluated
	some i, answer in input.firewall.egress.probes
	answer.verdict == "unknown"
	subject := answer_text(answer, answer.destinations)
	violation := lib.undetermined(
		"EGRESS-003",
		concat("", ["cannot tell whether ", subject, " is dropped: ", decided_text(answer)]),
		subject,
		[lib.pointer(["firewall", "egress", "probes", i])],
	)
}

deny contains violation if {
	not _egress_evaluated
	violation := lib.unknown("EGRESS-003", "firewall.egress")
}

# METADATA
# title: The firewall accepts outgoing traffic only towards the enclave
# description: >-
#   No class of destinations outside the enclave (data.allowlist.enclave) is accepted for NEW packets from this
#   host, as netfilter evaluates the whole ruleset. A class whose verdict depends on a rule gapseal does not
#   understand is reported as unknown, quoting the rule.
# custom:
#   id: EGRESS-004
#   severity: high
#   remediation: >-
#     Restrict the accept rule the finding quotes to enclave destinations (ip daddr / ip6 daddr within
#     data.allowlist.enclave), to oifname "lo", or to ct state established,related; delete it otherwise.
#   controls: [eu-ai-act:art-15, hipaa:164.312(e)(1)]
deny contains violation if {
	_egress_evaluated
	some i, answer in input.firewall.egress.classes
	answer.verdict == "accept"
	outside := _outside(answer)
	count(outside) > 0
	subject := answer_text(answer, outside)
	violation := lib.violation(
		"EGRESS-004",
		concat("", [subject, " (outside the enclave) leaves the host: ", decided_text(answer)]),
		subject,
		[lib.pointer(["firewall", "egress", "classes", i])],
	)
}

deny contains violation if {
	_egress_evaluated
	some i, answer in input.firewall.egress.classes
	answer.verdict == "unknown"
	outside := _outside(answer)
	count(outside) > 0
	subject := answer_text(answer, outside)
	violation := lib.undetermined(
		"EGRESS-004",
		concat("", ["cannot tell whether ", subject, " (outside the enclave) is dropped: ", decided_text(answer)]),
		subject,
		[lib.pointer(["firewall", "egress", "classes", i])],
	)
}

deny contains violation if {
	not _egress_evaluated
	violation := lib.unknown("EGRESS-004", "firewall.egress")
}

_egress_evaluated if input.firewall.egress.status == "ok"

# The destinations of an answer that lie outside the enclave (the evaluator's "enclave" annotation decides when
# present, see lib/net.rego).
_outside(answer) := [net | some net in answer.destinations; not lib.in_enclave(net)]

# "tcp to 198.51.100.0/24 port 1-79,81-65535"
answer_text(answer, nets) := concat("", [
	answer.protocol, " to ", concat(", ", [net.cidr | some net in nets]),
	_ports_text(answer.ports),
])

_ports_text(ports) := "" if {
	count(ports) == 0
} else := concat("", [" port ", concat(",", ports)])

decided_text(answer) := concat("", [_verdict_words[answer.verdict], concat("; ", answer.decided_by)])

_verdict_words := {
	"accept": "accepted by ",
	"drop": "dropped by ",
	"unknown": "it depends on what gapseal does not understand: ",
}
