# Tests of gapseal.access. Each test_<name> runs with input_<name> as its input (see lib/fixtures_test.rego).
package gapseal.access_test

import data.gapseal.access
import data.gapseal.fixtures

input_success_access_compliant := fixtures.compliant

test_success_access_compliant if {
	count(access.deny) == 0
}

# ------------------------------------------------------------------ ACCESS-001 passwords

input_success_access_001_no_sshd := fixtures.host_with({"ssh": {"status": "ok", "reason": null, "present": false, "method": "none"}})

test_success_access_001_no_sshd if {
	count(access.deny) == 0
}

input_fail_access_001_password_authentication := fixtures.host_with({"ssh": fixtures.with_keys(fixtures.ssh_ok, {"password_authentication": "yes"})})

test_fail_access_001_password_authentication if {
	access.deny == {fixtures.expect(
		"ACCESS-001",
		"sshd PasswordAuthentication is yes: logins may use a password",
		"PasswordAuthentication",
		["/ssh/password_authentication"],
	)}
}

input_fail_access_001_empty_passwords_and_kbd := fixtures.host_with({"ssh": fixtures.with_keys(fixtures.ssh_ok, {
	"permit_empty_passwords": "yes", "kbd_interactive_authentication": null,
})})

test_fail_access_001_empty_passwords_and_kbd if {
	access.deny == {
		fixtures.expect(
			"ACCESS-001",
			"sshd PermitEmptyPasswords is yes: logins may use a password",
			"PermitEmptyPasswords",
			["/ssh/permit_empty_passwords"],
		),
		fixtures.expect(
			"ACCESS-001",
			"sshd KbdInteractiveAuthentication is -: logins may use a password",
			"KbdInteractiveAuthentication",
			["/ssh/kbd_interactive_authentication"],
		),
	}
}

input_fail_access_001_unknown := fixtures.host_with({"ssh": fixtures.unknown_domain("sshd -T failed")})

test_fail_access_001_unknown if {
	fixtures.of_rule(access.deny, "ACCESS-001") == {fixtures.expect_unknown(
		"ACCESS-001", "ssh could not be collected: sshd -T failed", "ssh", ["/ssh"],
	)}
}

# ------------------------------------------------------------------ ACCESS-002 root login

input_success_access_002_root_no := fixtures.host_with({"ssh": fixtures.with_keys(fixtures.ssh_ok, {"permit_root_login": "no"})})

test_success_access_002_root_no if {
	count(fixtures.of_rule(access.deny, "ACCESS-002")) == 0
}

input_fail_access_002_root_password := fixtures.host_with({"ssh": fixtures.with_keys(fixtures.ssh_ok, {"permit_root_login": "yes"})})

test_fail_access_002_root_password if {
	access.deny == {fixtures.expect(
		"ACCESS-002",
		"sshd PermitRootLogin is yes: root may log in with a password",
		"PermitRootLogin",
		["/ssh/permit_root_login"],
	)}
}

input_fail_access_002_unknown := fixtures.host_with({"ssh": fixtures.unknown_domain("sshd_config unreadable")})

test_fail_access_002_unknown if {
	fixtures.of_rule(access.deny, "ACCESS-002") == {fixtures.expect_unknown(
		"ACCESS-002", "ssh could not be collected: sshd_config unreadable", "ssh", ["/ssh"],
	)}
}

# ------------------------------------------------------------------ ACCESS-003 exposed sockets

sockets_with(exposed) := fixtures.with_keys(fixtures.sockets_ok, {"exposed": exposed})

input_success_access_003_named_private_address := fixtures.compliant

test_success_access_003_named_private_address if {
	count(fixtures.of_rule(access.deny, "ACCESS-003")) == 0
}

input_fail_access_003_all_addresses := fixtures.host_with({"sockets": sockets_with([fixtures.socket("0.0.0.0", "unspecified", "all")])})

test_fail_access_003_all_addresses if {
	access.deny == {fixtures.expect(
		"ACCESS-003",
		"tcp 0.0.0.0 port 8000 listens on all addresses (vllm pid 31)",
		"tcp 0.0.0.0 port 8000",
		["/sockets/exposed/0"],
	)}
}

input_fail_access_003_public_address := fixtures.host_with({"sockets": sockets_with([
	fixtures.with_keys(fixtures.socket("203.0.113.7", "global", "specific"), {"processes": []}),
])})

test_fail_access_003_public_address if {
	access.deny == {fixtures.expect(
		"ACCESS-003",
		"tcp 203.0.113.7 port 8000 listens on a public address (no process visible)",
		"tcp 203.0.113.7 port 8000",
		["/sockets/exposed/0"],
	)}
}

input_fail_access_003_unknown := fixtures.host_with({"sockets": fixtures.unknown_domain("/proc/net/tcp unreadable")})

test_fail_access_003_unknown if {
	fixtures.of_rule(access.deny, "ACCESS-003") == {fixtures.expect_unknown(
		"ACCESS-003", "sockets could not be collected: /proc/net/tcp unreadable", "sockets", ["/sockets"],
	)}
}
