# Helpers every rule package uses to build its violation objects.
#
# A violation is the rule's metadata (data.gapseal_rules[id], which the loader parses from the rule's
# METADATA block, because regopy has no rego.metadata.rule()) plus what is wrong:
#   message   what is wrong, naming the offending thing
#   subject   the offending thing itself (a route, a socket, a variable)
#   evidence  JSON pointers into the facts document that show it
#   unknown   true when the violation is that a fact could not be collected
# object.union is used on flat objects only: regopy merges shallowly where OPA merges recursively.
package gapseal.lib

# The metadata of a rule; an unknown id still yields a violation (the evaluator rejects it loudly) rather
# than an undefined value that would make the rule pass.
meta(id) := m if {
	m := data.gapseal_rules[id]
} else := {"rule": id, "title": "unregistered rule", "package": "", "description": "", "severity": "high", "remediation": "", "controls": []}

violation(id, message, subject, evidence) := object.union(meta(id), {
	"message": message,
	"subject": subject,
	"evidence": evidence,
	"unknown": false,
})

# The violation of rule `id` when the facts domain at `path` (e.g. "firewall.nftables") has a status other
# than "ok", or is missing altogether: a fact that was not collected fails its rule.
unknown(id, path) := object.union(meta(id), {
	"message": concat("", [path, " could not be collected: ", reason(object.get(input, split(path, "."), {}))]),
	"subject": path,
	"evidence": [concat("/", ["", replace(path, ".", "/")])],
	"unknown": true,
})

# A violation of rule `id` that is itself an unknown (a value the collector could not determine).
undetermined(id, message, subject, evidence) := object.union(meta(id), {
	"message": message,
	"subject": subject,
	"evidence": evidence,
	"unknown": true,
})

reason(fact) := r if {
	r := fact.reason
	is_string(r)
	r != ""
} else := "missing from the facts" if {
	fact == {}
} else := "no reason recorded"

# text(x): x as a string for messages; "-" for null or a missing value.
text(x) := "-" if {
	x == null
} else := x if {
	is_string(x)
} else := sprintf("%v", [x])

# pointer(["routes", "default_routes", 3]) is "/routes/default_routes/3" (RFC 6901; keys here need no escaping).
pointer(parts) := concat("/", array.concat([""], [text(p) | some p in parts]))
