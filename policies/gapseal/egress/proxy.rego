# Proxies: no proxy variable points traffic at a proxy outside the allowlist.
package gapseal.egress

import data.gapseal.lib

# METADATA
# title: No proxy variables
# description: >-
#   No proxy variable (http_proxy, https_proxy, ftp_proxy, all_proxy, in any case) is set in the system
#   environment, login profiles, systemd units or the environment of a running inference process, unless
#   its value is an internal proxy listed in data.allowlist.proxies.
# custom:
#   id: EGRESS-006
#   severity: high
#   remediation: >-
#     Remove the variable from the file or unit named in the finding (and restart the process it was found
#     in), or list the internal proxy's URL in data.allowlist.proxies.
#   controls: [eu-ai-act:art-15, hipaa:164.312(e)(1)]
deny contains violation if {
	input.proxy.status == "ok"
	some i, setting in input.proxy.proxies
	not setting.value in data.allowlist.proxies
	violation := lib.violation(
		"EGRESS-006",
		concat("", [
			"proxy variable ", setting.variable, "=", setting.value,
			" is set in ", setting.location, " (", setting.origin, ")",
		]),
		setting.variable,
		[lib.pointer(["proxy", "proxies", i])],
	)
}

deny contains violation if {
	not input.proxy.status == "ok"
	violation := lib.unknown("EGRESS-006", "proxy")
}
