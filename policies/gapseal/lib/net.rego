# Network containment without net.cidr_* (regopy does not implement those builtins).
#
# The facts give every network as {family, first, last, ...} with first/last as fixed-width lower-case hex
# (8 digits for IPv4, 32 for IPv6), and the policy loader derives the same form for the enclave networks
# (data.allowlist.enclave_networks, from data.allowlist.enclave and data.allowlist.log_hosts). For strings of
# equal width, lexicographic order is numeric order, so "net lies inside e" is two string comparisons:
#     e.first <= net.first  and  net.last <= e.last
# Anything malformed (missing fields, a width mismatch) is simply not contained: rules fail closed.
#
# Speed: rego-cpp spends about half a millisecond per address on that loop, too slow for a 1000-rule firewall.
# So gapseal's evaluator precomputes the same test in Python and writes the answer into each network object as
# "enclave": true|false (gapseal.audit.evaluate.annotate_networks). A network with that field is decided by it;
# one without (facts fed to OPA directly, Rego tests) is decided by the comparison above. A unit test checks
# both give the same answer.
package gapseal.lib

contained(net, e) if {
	net.family == e.family
	count(net.first) == count(e.first)
	count(net.last) == count(e.last)
	e.first <= net.first
	net.last <= e.last
}

# in_enclave(net): the network lies inside one enclave network.
in_enclave(net) if net.enclave == true

in_enclave(net) if {
	not "enclave" in object.keys(net)
	some e in data.allowlist.enclave_networks
	contained(net, e)
}
