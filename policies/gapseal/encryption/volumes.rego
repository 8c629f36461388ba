# Encryption at rest: model and data volumes sit on dm-crypt/LUKS.
package gapseal.encryption

import data.gapseal.lib

# METADATA
# title: Model and data volumes are encrypted at rest
# description: >-
#   The block device chain behind every model and data path includes a dm-crypt/LUKS layer. Virtual file
#   systems (tmpfs) are not applicable; storage whose encryption cannot be determined is not known to comply.
# custom:
#   id: ENCRYPTION-001
#   severity: medium
#   remediation: >-
#     Put the model and data paths on a LUKS-encrypted volume (cryptsetup luksFormat, or the site's full-disk
#     encryption), or record a waiver with the compensating control.
#   controls: [hipaa:164.312(a)(2)(iv), eu-ai-act:art-15, hipaa:164.310(d)(1)]
deny contains violation if {
	input.storage.status == "ok"
	some i, entry in input.storage.paths
	entry.role in {"model", "data"}
	entry.exists == true
	entry.encryption == "not_encrypted"
	violation := lib.violation(
		"ENCRYPTION-001",
		concat("", [
			lib.storage_subject(entry), " is on an unencrypted volume (",
			concat(" -> ", entry.device_chain), ")",
		]),
		entry.path,
		[lib.pointer(["storage", "paths", i])],
	)
}

deny contains violation if {
	input.storage.status == "ok"
	some i, entry in input.storage.paths
	entry.role in {"model", "data"}
	entry.exists == true
	entry.encryption == "unknown"
	violation := lib.undetermined(
		"ENCRYPTION-001",
		concat("", [
			"encryption of the volume behind ", lib.storage_subject(entry), " could not be determined: ",
			lib.text(object.get(entry, "reason", null)),
		]),
		entry.path,
		[lib.pointer(["storage", "paths", i])],
	)
}

deny contains violation if {
	not input.storage.status == "ok"
	violation := lib.unknown("ENCRYPTION-001", "storage")
}
