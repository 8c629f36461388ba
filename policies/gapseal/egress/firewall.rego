# Firewall: output dropped by default, accepted only towards the enclave.
package gapseal.egress

import data.gapseal.lib

# METADATA
# title: Outgoing traffic is dropped by default
# description: >-
#   nftables has a filter chain on the output hook with policy drop for IPv4 and for IPv6 (an inet chain
#   covers both), so anything not explicitly accepted cannot leave.
# custom:
#   id: EGRESS-003
#   severity: high
#   remediation: >-
#     Load an nftables ruleset with an output filter chain whose policy is drop, e.g.
#     table inet gapseal { chain output { type filter hook output priority 0; policy drop; ... } }
#     (the installer's egress lockdown role writes one).
#   controls: [eu-ai-act:art-15, hipaa:164.312(e)(1)]
deny contains violation if {
	input.firewall.nftables.status == "ok"
	some family, name in {"ip": "IPv4", "ip6": "IPv6"}
	not output_dropped(family)
	violation := lib.violation(
		"EGRESS-003",
		concat("", [name, " output is not dropped by default: no ", family, " or inet filter chain on hook output has policy drop"]),
		concat("", ["nftables ", family, " output policy"]),
		["/firewall/nftables/output_policy"],
	)
}

deny contains violation if {
	not input.firewall.nftables.status == "ok"
	violation := lib.unknown("EGRESS-003", "firewall.nftables")
}

output_dropped(family) if input.firewall.nftables.output_policy[family] == "drop"

output_dropped(_) if input.firewall.nftables.output_policy.inet == "drop"

# METADATA
# title: The firewall accepts outgoing traffic only towards the enclave
# description: >-
#   Every accept rule in an output filter chain (and in the chains it jumps to) is limited to the loopback
#   interface, to replies of established connections, or to destination networks inside the enclave.
#   A rule with negated or unparsed matches cannot be verified and counts as a violation.
# custom:
#   id: EGRESS-004
#   severity: high
#   remediation: >-
#     Restrict the accept rule to enclave destinations (ip daddr / ip6 daddr within data.allowlist.enclave),
#     to oifname "lo", or to ct state established,related; delete it otherwise.
#   controls: [eu-ai-act:art-15, hipaa:164.312(e)(1)]
deny contains violation if {
	input.firewall.nftables.status == "ok"
	some i in _suspect_accepts
	rule := input.firewall.nftables.rules[i]
	chain_key(rule.family, rule.table, rule.chain) in output_chains
	not accept_allowed(rule)
	subject := rule_text(rule)
	violation := lib.violation(
		"EGRESS-004",
		concat("", ["nftables rule ", subject, " ", accept_problem(rule)]),
		subject,
		[lib.pointer(["firewall", "nftables", "rules", i])],
	)
}

deny contains violation if {
	not input.firewall.nftables.status == "ok"
	violation := lib.unknown("EGRESS-004", "firewall.nftables")
}

# Fast path, over every firewall rule: the accept rules that are not plainly limited to destinations the evaluator
# annotated as inside the enclave. Only these go through chain membership and accept_allowed (halves rego-cpp's time
# on a 1000-rule ruleset). A rule without annotations is always a suspect, so nothing is skipped unchecked.
_suspect_accepts := {i |
	rule := input.firewall.nftables.rules[i]
	rule.verdict == "accept"
	not _plain_enclave_accept(rule)
}

_plain_enclave_accept(rule) if {
	rule.negated == false
	rule.unparsed == false
	count(rule.daddr) > 0
	not _annotated_outside(rule)
}

_annotated_outside(rule) if {
	some net in rule.daddr
	not net.enclave == true # a network without the annotation counts as outside here: full check
}

chain_key(family, table, chain) := concat(" ", [family, table, chain])

# Output base chains, and every chain reachable from them through jump/goto verdicts.
# (Complete rules built with comprehensions: regopy caches those, but re-evaluates a partial set at each use.)
output_chains := graph.reachable(_chain_graph, _output_base_chains)

_output_base_chains := {chain_key(c.family, c.table, c.name) |
	some c in input.firewall.nftables.chains
	c.hook == "output"
}

# [from, to] chain keys of every jump/goto verdict (one pass over the rules).
_jumps := {[chain_key(r.family, r.table, r.chain), chain_key(r.family, r.table, r.target)] |
	some r in input.firewall.nftables.rules
	r.verdict in {"jump", "goto"}
	is_string(r.target)
}

_chain_graph := {key: targets |
	some c in input.firewall.nftables.chains
	key := chain_key(c.family, c.table, c.name)
	targets := {edge[1] |
		some edge in _jumps
		edge[0] == key
	}
}

# An accept rule is allowed when it is verifiable and limited to enclave destinations, to loopback, or to
# replies of established connections. (Written with negation rather than `every`, and with few function bodies:
# rego-cpp is slow at both, and this runs once per firewall rule.)
accept_allowed(rule) if {
	rule.negated == false
	rule.unparsed == false
	_limited(rule)
}

_limited(rule) if {
	count(rule.daddr) > 0
	not _daddr_outside(rule)
}

_limited(rule) if {
	count(rule.oifname) > 0
	not _oif_not_lo(rule)
}

_limited(rule) if {
	count(rule.ct_state) > 0
	not _ct_not_reply(rule)
}

# IPv6 neighbour discovery (RFC 4861) is link-scoped: sent with hop limit 255 and dropped by any receiver that
# sees less, so no router forwards it. An accept limited to these types cannot carry data beyond the link.
_limited(rule) if {
	types := object.get(rule, "icmpv6_types", [])
	count(types) > 0
	not _icmpv6_beyond_link(types)
}

_neighbour_discovery := {"nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert"}

_icmpv6_beyond_link(types) if {
	some t in types
	not t in _neighbour_discovery
}

# The evaluator's annotation decides directly (one comparison per network instead of a call into lib: this runs
# for every accept rule); facts without it go through lib.in_enclave's hex comparison.
_daddr_outside(rule) if {
	some net in rule.daddr
	net.enclave == false
}

_daddr_outside(rule) if {
	some net in rule.daddr
	not "enclave" in object.keys(net)
	not lib.in_enclave(net)
}

_oif_not_lo(rule) if {
	some name in rule.oifname
	name != "lo"
}

_ct_not_reply(rule) if {
	some state in rule.ct_state
	not state in {"established", "related"}
}

_unverifiable(rule) if rule.negated == true

_unverifiable(rule) if rule.unparsed == true

accept_problem(rule) := "has negated or unparsed matches, so where it accepts traffic to cannot be verified" if {
	_unverifiable(rule)
} else := "accepts outgoing traffic to any destination" if {
	count(rule.daddr) == 0
} else := concat("", [
	"accepts outgoing traffic to ",
	concat(", ", sort([net.cidr | some net in rule.daddr; not lib.in_enclave(net)])),
	", outside the enclave",
])

rule_text(rule) := concat("", [
	rule.family, " ", rule.table, " ", rule.chain, " handle ", lib.text(object.get(rule, "handle", null)),
])
