# Test fixtures shared by every *_test.rego: a compliant host, domain by domain, in the facts schema's shape
# (gapseal/audit/facts.py), and helpers to build whole expected violation objects.
# Loaded only by `gapseal policy test`, never for evaluation.
#
# How a test gets its input: `gapseal policy test` evaluates the rule input_<name> (if the module has one) and
# runs test_<name> with that document as the input. Tests do not use `with input as ...`: rego-cpp (regopy
# 1.4-1.5) crashes on it when the rule under test calls any builtin, and ignores `with input.<path> as ...`
# overrides inside rules. `with data.<path> as ...` works in both engines and is used for allowlist variants.
package gapseal.fixtures

# A host that complies with every rule.
compliant := {
	"routes": routes_ok,
	"firewall": firewall_ok,
	"dns": dns_ok,
	"proxy": {"status": "ok", "reason": null, "settings": [], "proxies": []},
	"probes": probes_ok,
	"sockets": sockets_ok,
	"telemetry": telemetry_ok,
	"storage": storage_ok,
	"integrity": integrity_ok,
	"ssh": ssh_ok,
	"logging": logging_ok,
	"package_sources": {"status": "ok", "reason": null, "entries": []},
	"time": {"status": "ok", "reason": null, "daemons": [], "servers": []},
	"datapath": datapath_ok,
}

# The compliant host with the domains in `overrides` replaced whole (object.union would merge nested objects
# differently in regopy and OPA, so it is not used for this).
host_with(overrides) := {k: v |
	some k, base in compliant
	v := object.get(overrides, k, base)
}

# obj with `key` set to `value`, and obj with every key of `changes` replaced. They replace nested objects whole:
# object.union merges nested objects recursively in OPA but not in regopy, so tests never use it on them.
with_key(obj, key, value) := object.union(object.remove(obj, [key]), {key: value})

with_keys(obj, changes) := object.union(object.remove(obj, object.keys(changes)), changes)

# The whole violation object a rule reports: its metadata plus what is wrong.
expect(id, message, subject, evidence) := with_keys(data.gapseal_rules[id], {
	"message": message,
	"subject": subject,
	"evidence": evidence,
	"unknown": false,
})

expect_unknown(id, message, subject, evidence) := with_keys(data.gapseal_rules[id], {
	"message": message,
	"subject": subject,
	"evidence": evidence,
	"unknown": true,
})

# A domain that could not be collected.
unknown_domain(reason) := {"status": "unknown", "reason": reason}

net(cidr, family, prefixlen, first, last, class) := {
	"cidr": cidr, "family": family, "prefixlen": prefixlen,
	"first": first, "last": last, "address_class": class,
}

enclave_net := net("10.231.1.0/30", "inet", 30, "0ae70100", "0ae70103", "private")

route(dst, gateway, dev, is_default) := {
	"family": dst.family, "table": "main", "type": "unicast", "dst": dst, "is_default": is_default,
	"gateway": gateway, "dev": dev, "protocol": "kernel", "scope": "link", "prefsrc": null, "metric": null,
	"forwards": true,
}

routes_ok := {
	"status": "ok", "reason": null,
	"routes": [route(enclave_net, null, "veth1", false)],
	"rules": [],
	"default_routes": [],
	"forwarding_routes": [route(enclave_net, null, "veth1", false)],
	"ip_forwarding": forwarding_off,
}

# The forwarding sysctls of a host that forwards nothing (a new network namespace's defaults).
forwarding_off := {
	"status": "ok", "reason": null, "inet": false, "inet6": false, "interfaces": {"inet": [], "inet6": []},
	"settings": [
		{"family": "inet", "interface": "all", "path": "/proc/sys/net/ipv4/conf/all/forwarding", "value": 0},
		{"family": "inet", "interface": "veth1", "path": "/proc/sys/net/ipv4/conf/veth1/forwarding", "value": 0},
		{"family": "inet6", "interface": "all", "path": "/proc/sys/net/ipv6/conf/all/forwarding", "value": 0},
	],
}

nft_rule(chain, verdict, daddr) := {
	"family": "inet", "table": "gapseal", "chain": chain, "handle": 7, "verdict": verdict, "target": null,
	"daddr": daddr, "saddr": [], "dports": [], "oifname": [], "iifname": [], "ct_state": [], "icmpv6_types": [],
	"negated": false, "unparsed": false, "comment": null,
}

firewall_ok := {
	"status": "ok", "reason": null,
	"nftables": {
		"status": "ok", "reason": null, "present": true,
		"chains": [{
			"family": "inet", "table": "gapseal", "name": "output", "type": "filter", "hook": "output",
			"priority": 0, "policy": "drop", "rule_count": 3,
		}],
		"rules": [
			with_keys(nft_rule("output", "accept", []), {"oifname": ["lo"]}),
			with_keys(nft_rule("output", "accept", []), {"ct_state": ["established", "related"]}),
			nft_rule("output", "accept", [enclave_net]),
		],
		"output_policy": {"inet": "drop"},
	},
	"iptables": {"status": "ok", "reason": null, "present": false, "chains": []},
	"egress": egress_ok,
	"forward": forward_open,
}

# The netfilter evaluator's answers for the compliant host: the outside dropped by the output policy, tcp 22 to
# the enclave accepted.
drop_policy := ["nftables inet gapseal output: policy drop"]

egress_answer(family, protocol, destinations, ports, verdict, decided_by) := {
	"family": family, "protocol": protocol, "destinations": destinations, "ports": ports,
	"verdict": verdict, "decided_by": decided_by,
}

egress_ok := {
	"status": "ok", "reason": null,
	"base_chains": ["nftables inet gapseal output: hook output priority 0 policy drop"], "notes": [],
	"probes": [
		egress_answer("inet", "tcp", [net("203.0.113.1/32", "inet", 32, "cb007101", "cb007101", "documentation")], ["1-65535"], "drop", drop_policy),
		egress_answer("inet", "udp", [net("203.0.113.1/32", "inet", 32, "cb007101", "cb007101", "documentation")], ["1-65535"], "drop", drop_policy),
	],
	"classes": [egress_answer("inet", "tcp", [enclave_net], ["22"], "accept", ["nftables inet gapseal output: ip daddr 10.231.1.0/30 tcp dport 22 accept # handle 4"])],
}

# The forward path of the compliant host: its lockdown filters only its own packets, so forwarded ones would pass
# (harmless while forwarding is off).
no_forward_chain := ["no active base chain on the prerouting, forward or postrouting hooks for ip packets"]

public_v4 := net("0.0.0.0/0", "inet", 0, "00000000", "ffffffff", "unspecified")

forward_open := {
	"status": "ok", "reason": null,
	"base_chains": ["nftables inet gapseal output: hook output priority 0 policy drop"], "notes": [],
	"probes": [],
	"classes": [egress_answer("inet", "tcp", [public_v4], ["1-65535"], "accept", no_forward_chain)],
}

dns_ok := {
	"status": "ok", "reason": null,
	"nameservers": [{"address": "127.0.0.53", "address_class": "loopback", "origin": "resolv.conf"}],
	"search": [], "options": [], "nsswitch_hosts": ["files", "dns"],
	"resolved": {"present": false, "settings": {}},
}

probes_ok := {
	"status": "ok", "reason": null, "egress_possible": false, "active_targets": [],
	"probes": [{
		"kind": "route", "target": "203.0.113.1", "family": "inet", "active": false, "outcome": "no_route",
		"egress_possible": false, "detail": "Network is unreachable", "errno": "ENETUNREACH",
	}],
}

socket(address, class, scope) := {
	"protocol": "tcp", "family": "inet", "address": address, "port": 8000, "bind_scope": scope,
	"address_class": class, "inode": 4242, "processes": [{"pid": 31, "comm": "vllm", "exe": null}],
}

sockets_ok := {
	"status": "ok", "reason": null,
	"listening": [socket("127.0.0.1", "loopback", "loopback"), socket("10.231.1.2", "private", "specific")],
	"exposed": [socket("10.231.1.2", "private", "specific")],
}

switch(variable, expected, value, satisfied) := {
	"variable": variable, "expected": expected, "value": value, "satisfied": satisfied,
}

vllm_service(value, satisfied) := {
	"service": "vllm", "origin": "process", "location": "pid:31", "environment_known": true,
	"requirements": [{
		"service": "vllm", "purpose": "usage statistics",
		"any_of": [
			switch("VLLM_NO_USAGE_STATS", "1", value, satisfied),
			switch("DO_NOT_TRACK", "1", null, false),
		],
		"satisfied": satisfied,
	}],
	"telemetry_disabled": satisfied,
}

telemetry_ok := {"status": "ok", "reason": null, "services": [vllm_service("1", true)], "violations": []}

# The violations of rule `id` in a deny set.
of_rule(deny, id) := {v | some v in deny; v.rule == id}

path_storage(path, role, remote, encryption) := {
	"path": path, "role": role, "exists": true, "mount_point": "/srv", "fstype": "ext4",
	"source": "/dev/mapper/srv", "kind": "local_block", "remote": remote, "encryption": encryption,
	"device_chain": ["srv", "vda2", "vda"], "reason": null,
}

storage_ok := {
	"status": "ok", "reason": null, "mounts": [], "block_devices": [], "block_devices_status": "ok",
	"paths": [
		path_storage("/srv/gapseal/models", "model", false, "encrypted"),
		path_storage("/srv/gapseal/data", "data", false, "encrypted"),
	],
}

file_ok := {
	"path": "models/minilm/model.safetensors", "expected_sha256": "53aa", "expected_size": 10,
	"actual_sha256": "53aa", "actual_size": 10, "state": "ok",
}

integrity_ok := {
	"status": "ok", "reason": null, "record_path": "/var/lib/gapseal/installed.json", "record_present": true,
	"files": [file_ok], "checked": 1, "ok": 1, "failures": [],
}

ssh_ok := {
	"status": "ok", "reason": null, "present": true, "method": "sshd -T",
	"password_authentication": "no", "kbd_interactive_authentication": "no", "permit_empty_passwords": "no",
	"permit_root_login": "prohibit-password", "pubkey_authentication": "yes",
	"forwarding": [ssh_forwarding("global", false, false, false, false)],
}

# One sshd forwarding context with its four verdicts (settings shown as sshd -T prints them).
ssh_forwarding(context, tcp, streamlocal, tunnel, gateway_ports) := {
	"context": context, "method": "sshd -T",
	"settings": {
		"allowtcpforwarding": "no", "allowstreamlocalforwarding": "no", "permittunnel": "no", "gatewayports": "no",
		"permitopen": "any", "permitlisten": "any", "disableforwarding": "yes",
	},
	"tcp_forwarding": tcp, "streamlocal_forwarding": streamlocal, "tunnel": tunnel, "gateway_ports": gateway_ports,
}

logging_ok := {
	"status": "ok", "reason": null,
	"journald": {"present": true, "settings": {}, "storage": "persistent", "persistent": true, "max_retention_sec": null},
	"auditd": {"present": false, "settings": {}, "rules_files": []},
}

# A host whose only other namespace is a container behind a veth into the host, no bridge, no packet socket.
netlink(name, kind, link_type, master, peer_netns) := {
	"name": name, "ifindex": 2, "kind": kind, "link_type": link_type, "master": master, "lower": null,
	"peer_netns": peer_netns, "peer_unresolved": false,
}

container_ns := {
	"netns": "net:[4026532500]", "names": [], "pids": [41], "comms": ["sleep"], "status": "ok", "reason": null,
	"attached": true,
	"interfaces": [
		netlink("lo", null, "loopback", null, null),
		netlink("eth0", "veth", "ether", null, "net:[4026531840]"),
	],
	"ways_out": [],
}

datapath_ok := {
	"status": "ok", "reason": null, "netns": "net:[4026531840]", "initial_netns": "net:[4026531840]",
	"interfaces": [
		netlink("lo", null, "loopback", null, null),
		netlink("enp1s0", null, "ether", null, null),
		netlink("veth0", "veth", "ether", null, "net:[4026532500]"),
	],
	"bridges": [],
	"bridge_netfilter": {"loaded": false, "call_iptables": null, "call_ip6tables": null},
	"namespaces": [container_ns],
	"namespaces_status": "ok", "namespaces_reason": null,
	"packet_sockets": [],
	"packet_sockets_status": "ok", "packet_sockets_reason": null,
}
