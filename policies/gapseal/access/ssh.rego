# Access: sshd authenticates people with keys only.
package gapseal.access

import data.gapseal.lib

# METADATA
# title: SSH accepts no passwords
# description: >-
#   sshd has PasswordAuthentication no, KbdInteractiveAuthentication no and PermitEmptyPasswords no, so every
#   login is authenticated with a key. Hosts without sshd pass.
# custom:
#   id: ACCESS-001
#   severity: high
#   remediation: >-
#     Set PasswordAuthentication no, KbdInteractiveAuthentication no and PermitEmptyPasswords no in
#     sshd_config (before any Match block) and reload sshd.
#   controls: [hipaa:164.312(d), eu-ai-act:art-15]
deny contains violation if {
	input.ssh.status == "ok"
	input.ssh.present == true
	some setting, pair in _password_settings
	field := pair[0]
	value := object.get(input.ssh, field, null)
	_not_off(value, pair[1])
	violation := lib.violation(
		"ACCESS-001",
		concat("", ["sshd ", setting, " is ", lib.text(value), ": logins may use a password"]),
		setting,
		[concat("/", ["", "ssh", field])],
	)
}

deny contains violation if {
	not input.ssh.status == "ok"
	violation := lib.unknown("ACCESS-001", "ssh")
}

# setting name -> [facts field, the value that allows passwords ("" = anything but "no")]
_password_settings := {
	"PasswordAuthentication": ["password_authentication", ""],
	"KbdInteractiveAuthentication": ["kbd_interactive_authentication", ""],
	"PermitEmptyPasswords": ["permit_empty_passwords", "yes"],
}

_not_off(value, bad) if {
	bad == ""
	value != "no"
}

_not_off(value, bad) if {
	bad != ""
	value == bad
}

# METADATA
# title: SSH refuses root logins with a password
# description: >-
#   sshd's PermitRootLogin is no, prohibit-password (without-password) or forced-commands-only: root can log in,
#   if at all, only with a key.
# custom:
#   id: ACCESS-002
#   severity: high
#   remediation: Set PermitRootLogin prohibit-password (or no) in sshd_config and reload sshd.
#   controls: [hipaa:164.312(d), hipaa:164.312(a)(1), eu-ai-act:art-15]
deny contains violation if {
	input.ssh.status == "ok"
	input.ssh.present == true
	value := object.get(input.ssh, "permit_root_login", null)
	not value in {"no", "prohibit-password", "without-password", "forced-commands-only"}
	violation := lib.violation(
		"ACCESS-002",
		concat("", ["sshd PermitRootLogin is ", lib.text(value), ": root may log in with a password"]),
		"PermitRootLogin",
		["/ssh/permit_root_login"],
	)
}

deny contains violation if {
	not input.ssh.status == "ok"
	violation := lib.unknown("ACCESS-002", "ssh")
}
