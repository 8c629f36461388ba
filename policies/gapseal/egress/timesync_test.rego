# Tests of EGRESS-011 (time servers). Each test_<name> runs with input_<name> as its input.
package gapseal.egress_timesync_test

import data.gapseal.egress
import data.gapseal.fixtures

_server(daemon, directive, address, net, local) := {
	"daemon": daemon, "directive": directive, "address": address, "network": net, "local": local,
	"location": "/etc/chrony/chrony.conf:3",
}

_time(servers) := {"status": "ok", "reason": null, "daemons": ["chrony"], "servers": servers}

_enclave_ip := fixtures.net("10.231.1.1/32", "inet", 32, "0ae70101", "0ae70101", "private")

_outside_ip := fixtures.net("198.51.100.123/32", "inet", 32, "c633647b", "c633647b", "documentation")

input_success_egress_011_enclave_local_and_listed := fixtures.host_with({"time": _time([
	_server("chrony", "server", "10.231.1.1", _enclave_ip, false),
	_server("ntpsec", "server", "127.127.1.0", null, true),
	_server("timesyncd", "NTP", "ntp.enclave", null, false),
])})

test_success_egress_011_enclave_local_and_listed if {
	count(fixtures.of_rule(egress.deny, "EGRESS-011")) == 0 with data.allowlist.ntp_servers as ["ntp.enclave"]
}

input_fail_egress_011_debian_pool := fixtures.host_with({"time": _time([
	_server("chrony", "pool", "2.debian.pool.ntp.org", null, false),
	_server("chrony", "server", "198.51.100.123", _outside_ip, false),
])})

test_fail_egress_011_debian_pool if {
	fixtures.of_rule(egress.deny, "EGRESS-011") == {
		fixtures.expect(
			"EGRESS-011",
			"chrony pool 2.debian.pool.ntp.org (/etc/chrony/chrony.conf:3) is not an internal time server",
			"2.debian.pool.ntp.org",
			["/time/servers/0"],
		),
		fixtures.expect(
			"EGRESS-011",
			"chrony server 198.51.100.123 (/etc/chrony/chrony.conf:3) is not an internal time server",
			"198.51.100.123",
			["/time/servers/1"],
		),
	}
}

input_fail_egress_011_unknown := fixtures.host_with({"time": fixtures.unknown_domain("collector failed")})

test_fail_egress_011_unknown if {
	fixtures.of_rule(egress.deny, "EGRESS-011") == {fixtures.expect_unknown(
		"EGRESS-011", "time could not be collected: collector failed", "time", ["/time"],
	)}
}
