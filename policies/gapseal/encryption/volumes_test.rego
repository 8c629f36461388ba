# Tests of gapseal.encryption. Each test_<name> runs with input_<name> as its input (see lib/fixtures_test.rego).
package gapseal.encryption_test

import data.gapseal.encryption
import data.gapseal.fixtures

storage_with(paths) := fixtures.with_keys(fixtures.storage_ok, {"paths": paths})

input_success_encryption_001_luks := fixtures.compliant

test_success_encryption_001_luks if {
	count(encryption.deny) == 0
}

input_success_encryption_001_install_path_not_required := fixtures.host_with({"storage": storage_with([
	fixtures.path_storage("/opt/gapseal", "install", false, "not_encrypted"),
	fixtures.path_storage("/dev/shm/models", "model", false, "not_applicable"),
])})

test_success_encryption_001_install_path_not_required if {
	count(encryption.deny) == 0
}

input_fail_encryption_001_plain_disk := fixtures.host_with({"storage": storage_with([
	fixtures.path_storage("/srv/gapseal/models", "model", false, "not_encrypted"),
])})

test_fail_encryption_001_plain_disk if {
	encryption.deny == {fixtures.expect(
		"ENCRYPTION-001",
		"model path /srv/gapseal/models is on an unencrypted volume (srv -> vda2 -> vda)",
		"/srv/gapseal/models",
		["/storage/paths/0"],
	)}
}

input_fail_encryption_001_undetermined := fixtures.host_with({"storage": storage_with([
	fixtures.with_keys(fixtures.path_storage("/srv/gapseal/data", "data", false, "unknown"), {"reason": "lsblk not found"}),
])})

test_fail_encryption_001_undetermined if {
	encryption.deny == {fixtures.expect_unknown(
		"ENCRYPTION-001",
		"encryption of the volume behind data path /srv/gapseal/data could not be determined: lsblk not found",
		"/srv/gapseal/data",
		["/storage/paths/0"],
	)}
}

input_fail_encryption_001_unknown := fixtures.host_with({"storage": fixtures.unknown_domain("mountinfo unreadable")})

test_fail_encryption_001_unknown if {
	encryption.deny == {fixtures.expect_unknown(
		"ENCRYPTION-001", "storage could not be collected: mountinfo unreadable", "storage", ["/storage"],
	)}
}

input_fail_encryption_001_mount_below_model_dir := fixtures.host_with({"storage": storage_with([
	fixtures.path_storage("/srv/gapseal/models", "model", false, "encrypted"),
	fixtures.with_keys(
		fixtures.path_storage("/srv/gapseal/models/big", "model", false, "not_encrypted"),
		{"below": "/srv/gapseal/models"},
	),
])})

test_fail_encryption_001_mount_below_model_dir if {
	encryption.deny == {fixtures.expect(
		"ENCRYPTION-001",
		"mount /srv/gapseal/models/big below model path /srv/gapseal/models is on an unencrypted volume (srv -> vda2 -> vda)",
		"/srv/gapseal/models/big",
		["/storage/paths/1"],
	)}
}
