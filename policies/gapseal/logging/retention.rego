# Logging: the system journal survives reboots and is kept long enough.
package gapseal.logging

import data.gapseal.lib

# METADATA
# title: The system journal is persistent
# description: >-
#   journald stores logs on disk (Storage=persistent, or auto with /var/log/journal present), so the record
#   of what the inference service and the host did survives a reboot.
# custom:
#   id: LOGGING-001
#   severity: medium
#   remediation: >-
#     Set Storage=persistent in /etc/systemd/journald.conf (or a drop-in) and restart systemd-journald.
#   controls: [eu-ai-act:art-12, eu-ai-act:art-19, eu-ai-act:art-26(6), hipaa:164.312(b)]
deny contains violation if {
	input.logging.status == "ok"
	input.logging.journald.persistent != true
	violation := lib.violation(
		"LOGGING-001",
		concat("", ["journald Storage=", lib.text(input.logging.journald.storage), " does not keep logs across reboots"]),
		"journald Storage",
		["/logging/journald/persistent"],
	)
}

deny contains violation if {
	not input.logging.status == "ok"
	violation := lib.unknown("LOGGING-001", "logging")
}

# METADATA
# title: Logs are kept at least six months
# description: >-
#   journald does not delete entries younger than data.logging.min_retention_days (183 days by default: the six
#   months of Regulation (EU) 2024/1689 Articles 19 and 26(6)). MaxRetentionSec unset means no time-based deletion.
# custom:
#   id: LOGGING-002
#   severity: medium
#   remediation: >-
#     Remove MaxRetentionSec= from journald.conf or set it to at least 6month, and make sure SystemMaxUse= leaves
#     room for six months of logs (or forward them to the internal log host).
#   controls: [eu-ai-act:art-19, eu-ai-act:art-26(6), hipaa:164.308(a)(1)(ii)(D), hipaa:164.312(b)]
deny contains violation if {
	input.logging.status == "ok"
	seconds := input.logging.journald.max_retention_sec
	is_number(seconds)
	seconds > 0
	seconds < data.logging.min_retention_days * 86400
	violation := lib.violation(
		"LOGGING-002",
		concat("", [
			"journald MaxRetentionSec=", lib.text(seconds), "s deletes logs before ",
			lib.text(data.logging.min_retention_days), " days",
		]),
		"journald MaxRetentionSec",
		["/logging/journald/max_retention_sec"],
	)
}

deny contains violation if {
	not input.logging.status == "ok"
	violation := lib.unknown("LOGGING-002", "logging")
}
