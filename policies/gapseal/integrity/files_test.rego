# Tests of gapseal.integrity. Each test_<name> runs with input_<name> as its input (see lib/fixtures_test.rego).
package gapseal.integrity_test

import data.gapseal.fixtures
import data.gapseal.integrity

modified := fixtures.with_keys(fixtures.file_ok, {"actual_sha256": "ffff", "actual_size": 11, "state": "modified"})

input_success_integrity_compliant := fixtures.compliant

test_success_integrity_compliant if {
	count(integrity.deny) == 0
}

input_success_integrity_001_record_present := fixtures.compliant

test_success_integrity_001_record_present if {
	count(fixtures.of_rule(integrity.deny, "INTEGRITY-001")) == 0
}

input_fail_integrity_001_record_missing := fixtures.host_with({"integrity": fixtures.with_keys(fixtures.integrity_ok, {
	"record_present": false, "files": [], "checked": 0, "ok": 0,
})})

test_fail_integrity_001_record_missing if {
	integrity.deny == {fixtures.expect(
		"INTEGRITY-001",
		"install record /var/lib/gapseal/installed.json is missing",
		"/var/lib/gapseal/installed.json",
		["/integrity/record_present"],
	)}
}

input_fail_integrity_001_unknown := fixtures.host_with({"integrity": fixtures.unknown_domain("no readable install record")})

test_fail_integrity_001_unknown if {
	fixtures.of_rule(integrity.deny, "INTEGRITY-001") == {fixtures.expect_unknown(
		"INTEGRITY-001", "integrity could not be collected: no readable install record", "integrity", ["/integrity"],
	)}
}

input_success_integrity_002_files_match := fixtures.compliant

test_success_integrity_002_files_match if {
	count(fixtures.of_rule(integrity.deny, "INTEGRITY-002")) == 0
}

input_fail_integrity_002_modified_file := fixtures.host_with({"integrity": fixtures.with_keys(fixtures.integrity_ok, {
	"files": [modified], "ok": 0, "failures": ["modified: models/minilm/model.safetensors"],
})})

test_fail_integrity_002_modified_file if {
	integrity.deny == {fixtures.expect(
		"INTEGRITY-002",
		"installed file models/minilm/model.safetensors is modified (expected sha256 53aa, found ffff)",
		"models/minilm/model.safetensors",
		["/integrity/files/0"],
	)}
}

input_fail_integrity_002_missing_file := fixtures.host_with({"integrity": fixtures.with_keys(fixtures.integrity_ok, {
	"files": [fixtures.file_ok, fixtures.with_keys(fixtures.file_ok, {"path": "bin/serve", "actual_sha256": null, "actual_size": null, "state": "missing"})],
})})

test_fail_integrity_002_missing_file if {
	integrity.deny == {fixtures.expect(
		"INTEGRITY-002",
		"installed file bin/serve is missing (expected sha256 53aa, found -)",
		"bin/serve",
		["/integrity/files/1"],
	)}
}

input_fail_integrity_002_unknown := fixtures.host_with({"integrity": fixtures.unknown_domain("installed.json is not valid JSON")})

test_fail_integrity_002_unknown if {
	fixtures.of_rule(integrity.deny, "INTEGRITY-002") == {fixtures.expect_unknown(
		"INTEGRITY-002", "integrity could not be collected: installed.json is not valid JSON", "integrity", ["/integrity"],
	)}
}
