# Access: services listen on named addresses, not on every interface.
package gapseal.access

import data.gapseal.lib

# METADATA
# title: No service listens on all addresses
# description: >-
#   Every listening TCP or UDP socket is bound to loopback or to one named non-public address; a socket bound
#   to 0.0.0.0 or :: accepts traffic on every interface, including any added later, and one bound to a public
#   (global) address faces outside the enclave.
# custom:
#   id: ACCESS-003
#   severity: medium
#   remediation: >-
#     Bind the service named in the finding to the enclave address it serves (or to 127.0.0.1), e.g. sshd
#     ListenAddress, vLLM --host, Ollama OLLAMA_HOST, and restart it.
#   controls: [hipaa:164.312(a)(1), eu-ai-act:art-15]
deny contains violation if {
	input.sockets.status == "ok"
	some i, sock in input.sockets.exposed
	_exposed_problem(sock)
	subject := concat("", [sock.protocol, " ", sock.address, " port ", lib.text(sock.port)])
	violation := lib.violation(
		"ACCESS-003",
		concat("", [subject, " ", _exposed_problem(sock), " (", _holders(sock), ")"]),
		subject,
		[lib.pointer(["sockets", "exposed", i])],
	)
}

deny contains violation if {
	not input.sockets.status == "ok"
	violation := lib.unknown("ACCESS-003", "sockets")
}

_exposed_problem(sock) := "listens on all addresses" if {
	sock.bind_scope == "all"
} else := "listens on a public address" if {
	sock.address_class == "global"
}

_holders(sock) := "no process visible" if {
	count(sock.processes) == 0
} else := concat(", ", sort([concat("", [p.comm, " pid ", lib.text(p.pid)]) | some p in sock.processes]))
