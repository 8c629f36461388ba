# Time: the host's clock is set only from servers inside the enclave.
package gapseal.egress

import data.gapseal.lib

# METADATA
# title: Time servers are inside the enclave
# description: >-
#   Every server, pool and peer of chrony, ntpsec/ntp and systemd-timesyncd (NTP=, FallbackNTP=, networkd's
#   NTP=, and the compiled-in FallbackNTP pool timesyncd asks when nothing is configured) is a local clock, an
#   address inside the enclave, or a server listed in data.allowlist.ntp_servers. NTP to outside servers is
#   traffic leaving the enclave and lets an outside party move the clock that logs and certificates rely on.
# custom:
#   id: EGRESS-011
#   severity: medium
#   remediation: >-
#     Configure the site's internal time server (chrony server/pool, timesyncd NTP=) and set FallbackNTP= empty,
#     or remove the outside server named in the finding; list internal time servers in the site file's
#     allowlist.ntp_servers.
#   controls: [eu-ai-act:art-12, eu-ai-act:art-15, hipaa:164.312(e)(1)]
deny contains violation if {
	input.time.status == "ok"
	some i, server in input.time.servers
	server.local != true
	not _allowed_time_server(server)
	violation := lib.violation(
		"EGRESS-011",
		concat("", [
			server.daemon, " ", server.directive, " ", server.address, " (", server.location,
			") is not an internal time server",
		]),
		server.address,
		[lib.pointer(["time", "servers", i])],
	)
}

deny contains violation if {
	not input.time.status == "ok"
	violation := lib.unknown("EGRESS-011", "time")
}

_allowed_time_server(server) if server.address in data.allowlist.ntp_servers

_allowed_time_server(server) if {
	server.network != null
	lib.in_enclave(server.network)
}
