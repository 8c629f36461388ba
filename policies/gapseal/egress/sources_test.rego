# Tests of EGRESS-010 (package and container sources). Each test_<name> runs with input_<name> as its input.
package gapseal.egress_sources_test

import data.gapseal.egress
import data.gapseal.fixtures

_entry(manager, kind, value, host, hostport, net, local) := {
	"manager": manager, "kind": kind, "value": value, "host": host, "port": null, "hostport": hostport,
	"network": net, "local": local, "location": "/etc/x:1",
}

_sources(entries) := {"status": "ok", "reason": null, "entries": entries}

_enclave_ip := fixtures.net("10.231.1.9/32", "inet", 32, "0ae70109", "0ae70109", "private")

_outside_ip := fixtures.net("203.0.113.7/32", "inet", 32, "cb007107", "cb007107", "documentation")

input_success_egress_010_local_enclave_and_listed := fixtures.host_with({"package_sources": _sources([
	_entry("apt", "source", "file:/srv/debian", null, null, null, true),
	_entry("pip", "source", "http://10.231.1.9/simple", "10.231.1.9", "10.231.1.9", _enclave_ip, false),
	_entry("podman", "registry", "registry.enclave:5000", "registry.enclave", "registry.enclave:5000", null, false),
	_entry("npm", "source", "http://npm.enclave/", "npm.enclave", "npm.enclave", null, false),
	_entry("apt", "proxy", "http://proxy.enclave:3142", "proxy.enclave", "proxy.enclave:3142", null, false),
])})

test_success_egress_010_local_enclave_and_listed if {
	count(fixtures.of_rule(egress.deny, "EGRESS-010")) == 0 with data.allowlist.registries as ["registry.enclave:5000", "npm.enclave"]
		with data.allowlist.proxies as ["http://proxy.enclave:3142"]
}

input_fail_egress_010_debian_mirror := fixtures.host_with({"package_sources": _sources([
	_entry("apt", "source", "http://deb.debian.org/debian", "deb.debian.org", "deb.debian.org", null, false),
])})

test_fail_egress_010_debian_mirror if {
	fixtures.of_rule(egress.deny, "EGRESS-010") == {fixtures.expect(
		"EGRESS-010",
		"apt source http://deb.debian.org/debian (/etc/x:1) is not local, in the enclave or allowlisted",
		"apt http://deb.debian.org/debian",
		["/package_sources/entries/0"],
	)}
}

input_fail_egress_010_outside_ip_and_unlisted_port := fixtures.host_with({"package_sources": _sources([
	_entry("docker", "mirror", "https://203.0.113.7", "203.0.113.7", "203.0.113.7", _outside_ip, false),
	_entry("podman", "registry", "registry.enclave:5001", "registry.enclave", "registry.enclave:5001", null, false),
])})

test_fail_egress_010_outside_ip_and_unlisted_port if {
	fixtures.of_rule(egress.deny, "EGRESS-010") == {
		fixtures.expect(
			"EGRESS-010",
			"docker mirror https://203.0.113.7 (/etc/x:1) is not local, in the enclave or allowlisted",
			"docker https://203.0.113.7",
			["/package_sources/entries/0"],
		),
		fixtures.expect(
			"EGRESS-010",
			"podman registry registry.enclave:5001 (/etc/x:1) is not local, in the enclave or allowlisted",
			"podman registry.enclave:5001",
			["/package_sources/entries/1"],
		),
	} with data.allowlist.registries as ["registry.enclave:5000"]
}

input_fail_egress_010_proxy_auto_detect := fixtures.host_with({"package_sources": _sources([
	_entry("apt", "proxy", "auto-detect:/usr/bin/find-proxy", null, null, null, false),
])})

test_fail_egress_010_proxy_auto_detect if {
	fixtures.of_rule(egress.deny, "EGRESS-010") == {fixtures.expect(
		"EGRESS-010",
		"apt proxy auto-detect:/usr/bin/find-proxy (/etc/x:1) is not local, in the enclave or allowlisted",
		"apt auto-detect:/usr/bin/find-proxy",
		["/package_sources/entries/0"],
	)}
}

input_fail_egress_010_unknown := fixtures.host_with({"package_sources": fixtures.unknown_domain("/etc/docker/daemon.json: not valid JSON")})

test_fail_egress_010_unknown if {
	fixtures.of_rule(egress.deny, "EGRESS-010") == {fixtures.expect_unknown(
		"EGRESS-010",
		"package_sources could not be collected: /etc/docker/daemon.json: not valid JSON",
		"package_sources",
		["/package_sources"],
	)}
}

input_fail_egress_010_missing := object.remove(fixtures.compliant, ["package_sources"])

test_fail_egress_010_missing if {
	fixtures.of_rule(egress.deny, "EGRESS-010") == {fixtures.expect_unknown(
		"EGRESS-010",
		"package_sources could not be collected: missing from the facts",
		"package_sources",
		["/package_sources"],
	)}
}

input_fail_egress_010_unlisted_proxy_inside_enclave := fixtures.host_with({"package_sources": _sources([
	_entry("apt", "proxy", "http://10.231.1.9:3142", "10.231.1.9", "10.231.1.9:3142", _enclave_ip, false),
])})

test_fail_egress_010_unlisted_proxy_inside_enclave if {
	fixtures.of_rule(egress.deny, "EGRESS-010") == {fixtures.expect(
		"EGRESS-010",
		"apt proxy http://10.231.1.9:3142 (/etc/x:1) is not local, in the enclave or allowlisted",
		"apt http://10.231.1.9:3142",
		["/package_sources/entries/0"],
	)}
}
