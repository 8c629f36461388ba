# Telemetry: every inference service runs with its documented usage-statistics and hub switches off.
package gapseal.telemetry

import data.gapseal.lib

# METADATA
# title: Inference services run with telemetry disabled
# description: >-
#   Every inference service found running or configured (vLLM, Hugging Face hub/transformers,
#   text-generation-inference, Ollama, llama.cpp server, Open WebUI, Gradio) has, for each telemetry or
#   online feature, one of the environment switches its project documents set to the value that disables it.
#   A service whose environment cannot be read is not known to comply.
# custom:
#   id: TELEMETRY-001
#   severity: high
#   remediation: >-
#     Set the switch named in the finding in the service's environment (its systemd unit Environment= or
#     EnvironmentFile=) and restart it; the installer's service role sets them all.
#   controls: [eu-ai-act:art-15, hipaa:164.312(e)(1)]
deny contains violation if {
	input.telemetry.status == "ok"
	some i, service in input.telemetry.services
	service.environment_known == true
	some j, req in service.requirements
	req.satisfied != true
	subject := concat("@", [service.service, service.location])
	violation := lib.violation(
		"TELEMETRY-001",
		concat("", [
			subject, ": ", req.purpose, " not disabled (set one of ",
			concat(", ", [concat("=", [s.variable, s.expected]) | some s in req.any_of]), ")",
		]),
		subject,
		[lib.pointer(["telemetry", "services", i, "requirements", j])],
	)
}

deny contains violation if {
	input.telemetry.status == "ok"
	some i, service in input.telemetry.services
	service.environment_known != true
	subject := concat("@", [service.service, service.location])
	violation := lib.undetermined(
		"TELEMETRY-001",
		concat("", [subject, ": environment could not be read, so its telemetry switches are unknown"]),
		subject,
		[lib.pointer(["telemetry", "services", i])],
	)
}

deny contains violation if {
	not input.telemetry.status == "ok"
	violation := lib.unknown("TELEMETRY-001", "telemetry")
}
