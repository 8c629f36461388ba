# Tests of gapseal.logging. Each test_<name> runs with input_<name> as its input (see lib/fixtures_test.rego).
package gapseal.logging_test

import data.gapseal.fixtures
import data.gapseal.logging

journald_with(changes) := fixtures.with_key(fixtures.logging_ok, "journald", fixtures.with_keys(fixtures.logging_ok.journald, changes))

input_success_logging_001_persistent := fixtures.compliant

test_success_logging_001_persistent if {
	count(logging.deny) == 0
}

input_fail_logging_001_volatile := fixtures.host_with({"logging": journald_with({"storage": "volatile", "persistent": false})})

test_fail_logging_001_volatile if {
	logging.deny == {fixtures.expect(
		"LOGGING-001",
		"journald Storage=volatile does not keep logs across reboots",
		"journald Storage",
		["/logging/journald/persistent"],
	)}
}

input_fail_logging_001_unknown := fixtures.host_with({"logging": fixtures.unknown_domain("journald.conf unreadable")})

test_fail_logging_001_unknown if {
	fixtures.of_rule(logging.deny, "LOGGING-001") == {fixtures.expect_unknown(
		"LOGGING-001", "logging could not be collected: journald.conf unreadable", "logging", ["/logging"],
	)}
}

input_success_logging_002_six_months := fixtures.host_with({"logging": journald_with({"max_retention_sec": 15811200})})

test_success_logging_002_six_months if {
	count(logging.deny) == 0
}

input_fail_logging_002_one_week := fixtures.host_with({"logging": journald_with({"max_retention_sec": 604800})})

test_fail_logging_002_one_week if {
	logging.deny == {fixtures.expect(
		"LOGGING-002",
		"journald MaxRetentionSec=604800s deletes logs before 183 days",
		"journald MaxRetentionSec",
		["/logging/journald/max_retention_sec"],
	)}
}

input_fail_logging_002_site_minimum := fixtures.host_with({"logging": journald_with({"max_retention_sec": 15811200})})

test_fail_logging_002_site_minimum if {
	count(fixtures.of_rule(logging.deny, "LOGGING-002")) == 1 with data.logging.min_retention_days as 365
}

input_fail_logging_002_unknown := fixtures.host_with({"logging": fixtures.unknown_domain("journald.conf unreadable")})

test_fail_logging_002_unknown if {
	fixtures.of_rule(logging.deny, "LOGGING-002") == {fixtures.expect_unknown(
		"LOGGING-002", "logging could not be collected: journald.conf unreadable", "logging", ["/logging"],
	)}
}
