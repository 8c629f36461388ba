# Tests of gapseal.residency. Each test_<name> runs with input_<name> as its input (see lib/fixtures_test.rego).
package gapseal.residency_test

import data.gapseal.fixtures
import data.gapseal.residency

nfs_path := fixtures.with_keys(fixtures.path_storage("/srv/gapseal/models", "model", true, "unknown"), {
	"kind": "network", "fstype": "nfs4", "source": "files.example:/export/models", "mount_point": "/srv/gapseal/models",
})

storage_with(paths) := fixtures.with_keys(fixtures.storage_ok, {"paths": paths})

input_success_residency_001_local_disk := fixtures.compliant

test_success_residency_001_local_disk if {
	count(residency.deny) == 0
}

input_success_residency_001_missing_path_ignored := fixtures.host_with({"storage": storage_with([fixtures.with_keys(nfs_path, {"exists": false})])})

test_success_residency_001_missing_path_ignored if {
	count(residency.deny) == 0
}

input_fail_residency_001_nfs := fixtures.host_with({"storage": storage_with([nfs_path])})

test_fail_residency_001_nfs if {
	residency.deny == {fixtures.expect(
		"RESIDENCY-001",
		"model path /srv/gapseal/models is on network storage nfs4 files.example:/export/models mounted at /srv/gapseal/models",
		"/srv/gapseal/models",
		["/storage/paths/0"],
	)}
}

input_fail_residency_001_undetermined := fixtures.host_with({"storage": storage_with([
	fixtures.with_keys(fixtures.path_storage("/srv/gapseal/data", "data", null, "unknown"), {"reason": "no mount covers the path"}),
])})

test_fail_residency_001_undetermined if {
	residency.deny == {fixtures.expect_unknown(
		"RESIDENCY-001",
		"storage behind data path /srv/gapseal/data could not be determined: no mount covers the path",
		"/srv/gapseal/data",
		["/storage/paths/0"],
	)}
}

input_fail_residency_001_unknown := fixtures.host_with({"storage": fixtures.unknown_domain("mountinfo unreadable")})

test_fail_residency_001_unknown if {
	residency.deny == {fixtures.expect_unknown(
		"RESIDENCY-001", "storage could not be collected: mountinfo unreadable", "storage", ["/storage"],
	)}
}

input_fail_residency_001_nfs_below_model_dir := fixtures.host_with({"storage": fixtures.with_keys(fixtures.storage_ok, {"paths": [
	fixtures.path_storage("/srv/gapseal/models", "model", false, "encrypted"),
	fixtures.with_keys(
		fixtures.path_storage("/srv/gapseal/models/big", "model", true, "unknown"),
		{"below": "/srv/gapseal/models", "kind": "network", "fstype": "nfs4", "source": "files:/export", "mount_point": "/srv/gapseal/models/big"},
	),
]})})

test_fail_residency_001_nfs_below_model_dir if {
	fixtures.of_rule(residency.deny, "RESIDENCY-001") == {fixtures.expect(
		"RESIDENCY-001",
		"mount /srv/gapseal/models/big below model path /srv/gapseal/models is on network storage nfs4 files:/export mounted at /srv/gapseal/models/big",
		"/srv/gapseal/models/big",
		["/storage/paths/1"],
	)}
}
