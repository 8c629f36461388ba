# How storage findings name what they are about.
package gapseal.lib

# storage_subject(entry): "model path /srv/models", or for a mount found below such a path (facts field `below`)
# "mount /srv/models/big below model path /srv/models".
storage_subject(entry) := concat("", ["mount ", entry.path, " below ", entry.role, " path ", entry.below]) if {
	is_string(object.get(entry, "below", null))
} else := concat("", [entry.role, " path ", entry.path])
