# Tests of gapseal.telemetry. Each test_<name> runs with input_<name> as its input (see lib/fixtures_test.rego).
package gapseal.telemetry_test

import data.gapseal.fixtures
import data.gapseal.telemetry

telemetry_with(services) := fixtures.with_keys(fixtures.telemetry_ok, {"services": services})

input_success_telemetry_001_switch_set := fixtures.compliant

test_success_telemetry_001_switch_set if {
	count(telemetry.deny) == 0
}

input_success_telemetry_001_no_services := fixtures.host_with({"telemetry": telemetry_with([])})

test_success_telemetry_001_no_services if {
	count(telemetry.deny) == 0
}

input_fail_telemetry_001_switch_missing := fixtures.host_with({"telemetry": telemetry_with([fixtures.vllm_service(null, false)])})

test_fail_telemetry_001_switch_missing if {
	telemetry.deny == {fixtures.expect(
		"TELEMETRY-001",
		"vllm@pid:31: usage statistics not disabled (set one of VLLM_NO_USAGE_STATS=1, DO_NOT_TRACK=1)",
		"vllm@pid:31",
		["/telemetry/services/0/requirements/0"],
	)}
}

input_fail_telemetry_001_environment_unreadable := fixtures.host_with({"telemetry": telemetry_with([
	fixtures.with_keys(fixtures.vllm_service(null, false), {"environment_known": false}),
])})

test_fail_telemetry_001_environment_unreadable if {
	telemetry.deny == {fixtures.expect_unknown(
		"TELEMETRY-001",
		"vllm@pid:31: environment could not be read, so its telemetry switches are unknown",
		"vllm@pid:31",
		["/telemetry/services/0"],
	)}
}

input_fail_telemetry_001_unknown := fixtures.host_with({"telemetry": fixtures.unknown_domain("/proc not mounted")})

test_fail_telemetry_001_unknown if {
	telemetry.deny == {fixtures.expect_unknown(
		"TELEMETRY-001", "telemetry could not be collected: /proc not mounted", "telemetry", ["/telemetry"],
	)}
}
