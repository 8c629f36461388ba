# Data residency: models and data live on the host's own storage, not on network or FUSE file systems.
package gapseal.residency

import data.gapseal.lib

# METADATA
# title: Models and data stay on local storage
# description: >-
#   Every model, data and install path is on a local block device (or a local virtual or overlay file system),
#   not on NFS, CIFS/SMB, Ceph, GlusterFS, 9p or a FUSE file system (sshfs, s3fs, rclone), from which data
#   may leave the host.
# custom:
#   id: RESIDENCY-001
#   severity: high
#   remediation: >-
#     Move the path named in the finding to a local disk (and unmount the remote file system), or mount the
#     remote storage elsewhere than model and data paths.
#   controls: [eu-ai-act:art-15, hipaa:164.312(a)(1), hipaa:164.312(e)(1)]
deny contains violation if {
	input.storage.status == "ok"
	some i, entry in input.storage.paths
	entry.exists == true
	entry.remote == true
	violation := lib.violation(
		"RESIDENCY-001",
		concat("", [
			lib.storage_subject(entry), " is on ", entry.kind, " storage ",
			lib.text(object.get(entry, "fstype", null)), " ", lib.text(object.get(entry, "source", null)),
			" mounted at ", lib.text(object.get(entry, "mount_point", null)),
		]),
		entry.path,
		[lib.pointer(["storage", "paths", i])],
	)
}

deny contains violation if {
	input.storage.status == "ok"
	some i, entry in input.storage.paths
	entry.exists == true
	entry.remote == null
	violation := lib.undetermined(
		"RESIDENCY-001",
		concat("", [
			"storage behind ", lib.storage_subject(entry), " could not be determined: ",
			lib.text(object.get(entry, "reason", null)),
		]),
		entry.path,
		[lib.pointer(["storage", "paths", i])],
	)
}

deny contains violation if {
	not input.storage.status == "ok"
	violation := lib.unknown("RESIDENCY-001", "storage")
}
