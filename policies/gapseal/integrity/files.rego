# Integrity: what was installed from the signed bundle is still what the bundle carried.
package gapseal.integrity

import data.gapseal.lib

# METADATA
# title: The install record is present
# description: >-
#   The host has the install record (var/lib/gapseal/installed.json) that lists every installed file with the
#   digest from the signed bundle; without it nothing installed can be checked.
# custom:
#   id: INTEGRITY-001
#   severity: high
#   remediation: >-
#     Reinstall from the verified bundle (gapseal install), which writes the record, or restore the record
#     from the installation's evidence.
#   controls: [eu-ai-act:art-15, hipaa:164.308(a)(5)(ii)(B)]
deny contains violation if {
	input.integrity.status == "ok"
	input.integrity.record_present != true
	violation := lib.violation(
		"INTEGRITY-001",
		concat("", ["install record ", input.integrity.record_path, " is missing"]),
		input.integrity.record_path,
		["/integrity/record_present"],
	)
}

deny contains violation if {
	not input.integrity.status == "ok"
	violation := lib.unknown("INTEGRITY-001", "integrity")
}

# METADATA
# title: Installed files match the signed bundle
# description: >-
#   Every file the install record lists exists as a regular file with the size and sha256 digest the signed
#   bundle gave it.
# custom:
#   id: INTEGRITY-002
#   severity: critical
#   remediation: >-
#     Find out who changed the file (the evidence keeps its digest), then reinstall it from the verified
#     bundle (gapseal install) and audit again.
#   controls: [eu-ai-act:art-15, hipaa:164.308(a)(5)(ii)(B)]
deny contains violation if {
	input.integrity.status == "ok"
	some i, file in input.integrity.files
	file.state != "ok"
	violation := lib.violation(
		"INTEGRITY-002",
		concat("", [
			"installed file ", file.path, " is ", file.state, " (expected sha256 ", file.expected_sha256,
			", found ", lib.text(object.get(file, "actual_sha256", null)), ")",
		]),
		file.path,
		[lib.pointer(["integrity", "files", i])],
	)
}

deny contains violation if {
	not input.integrity.status == "ok"
	violation := lib.unknown("INTEGRITY-002", "integrity")
}
