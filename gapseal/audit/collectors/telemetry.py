"""Telemetry and offline switches of inference services, checked in process environments and systemd units.

The switches (variable names exactly as each project documents them), and where each is documented:

| service     | purpose              | any one of                                   | source |
|-------------|----------------------|----------------------------------------------|--------|
| vllm        | usage statistics     | VLLM_NO_USAGE_STATS=1, DO_NOT_TRACK=1        | [1]    |
| vllm        | hub offline          | HF_HUB_OFFLINE=1                             | [2]    |
| tgi         | usage statistics     | USAGE_STATS=off, --usage-stats off           | [3]    |
| tgi         | hub offline          | HF_HUB_OFFLINE=1                             | [2]    |
| huggingface | hub telemetry        | HF_HUB_DISABLE_TELEMETRY=1, HF_HUB_OFFLINE=1 | [2]    |
| huggingface | hub offline          | HF_HUB_OFFLINE=1                             | [2]    |
| huggingface | transformers offline | TRANSFORMERS_OFFLINE=1, HF_HUB_OFFLINE=1     | [4]    |
| ollama      | cloud features       | OLLAMA_NO_CLOUD=1                            | [5]    |
| llama.cpp   | offline              | LLAMA_OFFLINE=1, --offline                   | [6]    |
| open-webui  | scarf analytics      | SCARF_NO_ANALYTICS=true                      | [7]    |
| open-webui  | do not track         | DO_NOT_TRACK=true                            | [7]    |
| open-webui  | chroma telemetry     | ANONYMIZED_TELEMETRY=false                   | [7]    |
| open-webui  | offline              | OFFLINE_MODE=true                            | [8]    |
| gradio      | analytics            | GRADIO_ANALYTICS_ENABLED=False               | [9]    |
| gapseal-service | hub telemetry    | HF_HUB_DISABLE_TELEMETRY=1, HF_HUB_OFFLINE=1 | [2]    |
| gapseal-service | hub offline      | HF_HUB_OFFLINE=1                             | [2]    |
| gapseal-service | do not track     | DO_NOT_TRACK=1                               | [1][7] |

[1] vllm-project/vllm docs/usage/usage_stats.md, "Opting out": VLLM_NO_USAGE_STATS or DO_NOT_TRACK.
[2] huggingface_hub docs, package_reference/environment_variables: HF_HUB_OFFLINE (no HTTP calls to the Hub),
    HF_HUB_DISABLE_TELEMETRY=1 ("globally disable telemetry").
[3] text-generation-launcher --help: ``--usage-stats <USAGE_STATS>`` "[env: USAGE_STATS=] [default: on]
    [possible values: on, off, no-stack]"; TGI docs usage_statistics.md.
[4] transformers docs installation.md, "Offline mode": TRANSFORMERS_OFFLINE=1 (and HF_HUB_OFFLINE=1).
[5] ollama/ollama docs/faq.mdx, "How do I disable Ollama Cloud features?": OLLAMA_NO_CLOUD=1.
[6] ggml-org/llama.cpp tools/server/README.md: ``--offline`` "prevents network access (env: LLAMA_OFFLINE)".
[7] open-webui/open-webui .env.example, "# DO NOT TRACK": SCARF_NO_ANALYTICS=true, DO_NOT_TRACK=true,
    ANONYMIZED_TELEMETRY=false.
[8] docs.openwebui.com reference/env-configuration, OFFLINE_MODE: disables update checks and model downloads.
[9] gradio guides "Environment Variables": GRADIO_ANALYTICS_ENABLED, options "True", "False".

``gapseal-service`` is a service of no known kind that gapseal installed: a program started from an installed build
directory (from the install record), or one whose ``GAPSEAL_SERVICE`` names no known kind. It gets the switches every
gapseal unit sets: the Hugging Face hub ones and the cross-tool DO_NOT_TRACK convention vLLM [1] and Open WebUI [7]
honour.

A switch whose variable starts with ``--`` is a command-line flag. A service is recognised from its command line,
from its program's location in an installed build directory, or named explicitly by
``GAPSEAL_SERVICE=<name>[,<name>]`` in its environment.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gapseal.audit.collectors._common import RawStore, Trace, parse_bool
from gapseal.audit.collectors._units import Unit
from gapseal.audit.facts import (
    InferenceService,
    ProcessesFacts,
    TelemetryFacts,
    TelemetryRequirement,
    TelemetrySwitch,
)

SERVICE_MARKER = "GAPSEAL_SERVICE"


@dataclass(frozen=True)
class Switch:
    """One documented way to turn telemetry off: a variable (or ``--flag``) and the value that does it."""

    variable: str
    expected: str
    """``1``/``true``: any true spelling; ``false``: any false spelling; anything else: that literal (any case)."""

    def satisfied_by(self, value: str | None) -> bool:
        """Return True when ``value`` turns the switch on."""
        if value is None:
            return False
        want = self.expected.lower()
        if want in {"1", "true"}:
            return parse_bool(value) is True
        if want == "false":
            return parse_bool(value) is False
        return value.strip().strip("\"'").lower() == want


REQUIREMENTS: dict[str, list[tuple[str, list[Switch]]]] = {
    "vllm": [
        ("usage statistics", [Switch("VLLM_NO_USAGE_STATS", "1"), Switch("DO_NOT_TRACK", "1")]),
        ("hub offline", [Switch("HF_HUB_OFFLINE", "1")]),
    ],
    "tgi": [
        ("usage statistics", [Switch("USAGE_STATS", "off"), Switch("--usage-stats", "off")]),
        ("hub offline", [Switch("HF_HUB_OFFLINE", "1")]),
    ],
    "huggingface": [
        ("hub telemetry", [Switch("HF_HUB_DISABLE_TELEMETRY", "1"), Switch("HF_HUB_OFFLINE", "1")]),
        ("hub offline", [Switch("HF_HUB_OFFLINE", "1")]),
        ("transformers offline", [Switch("TRANSFORMERS_OFFLINE", "1"), Switch("HF_HUB_OFFLINE", "1")]),
    ],
    "ollama": [("cloud features", [Switch("OLLAMA_NO_CLOUD", "1")])],
    "llama.cpp": [("offline", [Switch("LLAMA_OFFLINE", "1"), Switch("--offline", "true")])],
    "open-webui": [
        ("scarf analytics", [Switch("SCARF_NO_ANALYTICS", "true")]),
        ("do not track", [Switch("DO_NOT_TRACK", "true")]),
        ("chroma telemetry", [Switch("ANONYMIZED_TELEMETRY", "false")]),
        ("offline", [Switch("OFFLINE_MODE", "true")]),
    ],
    "gradio": [("analytics", [Switch("GRADIO_ANALYTICS_ENABLED", "false")])],
    "gapseal-service": [
        ("hub telemetry", [Switch("HF_HUB_DISABLE_TELEMETRY", "1"), Switch("HF_HUB_OFFLINE", "1")]),
        ("hub offline", [Switch("HF_HUB_OFFLINE", "1")]),
        ("do not track", [Switch("DO_NOT_TRACK", "1")]),
    ],
}

TELEMETRY_VARIABLES = frozenset(
    s.variable
    for reqs in REQUIREMENTS.values()
    for _, switches in reqs
    for s in switches
    if not s.variable.startswith("-")
) | {SERVICE_MARKER}
"""Every environment variable the telemetry check reads."""

_PROGRAMS = {
    "vllm": "vllm",
    "text-generation-launcher": "tgi",
    "text-generation-router": "tgi",
    "text-generation-server": "tgi",
    "ollama": "ollama",
    "llama-server": "llama.cpp",
    "open-webui": "open-webui",
    "gradio": "gradio",
}
_MODULES = {
    "vllm": "vllm",
    "open_webui": "open-webui",
    "gradio": "gradio",
    "transformers": "huggingface",
    "sentence_transformers": "huggingface",
    "huggingface_hub": "huggingface",
    "text_generation_server": "tgi",
}


def recognise(cmdline: list[str], environment: dict[str, str], build_dirs: Sequence[str] = ()) -> list[str]:
    """Name the inference services a command line, a ``GAPSEAL_SERVICE`` marker or an installed program shows."""
    found: set[str] = set()
    for name in environment.get(SERVICE_MARKER, "").split(","):
        name = name.strip()
        if name:
            found.add(name if name in REQUIREMENTS else "gapseal-service")
    args = cmdline[:8]
    for i, arg in enumerate(args):
        base = os.path.basename(arg)
        if base in _PROGRAMS and (i == 0 or os.path.basename(args[0]).startswith("python") or i == 1):
            found.add(_PROGRAMS[base])
        if arg == "-m" and i + 1 < len(args):
            module = args[i + 1].split(".", 1)[0]
            if module in _MODULES:
                found.add(_MODULES[module])
        if ":" in arg and arg.split(".", 1)[0] in _MODULES and not arg.startswith("-"):  # uvicorn open_webui.main:app
            found.add(_MODULES[arg.split(".", 1)[0]])
    if not found and any(_under(arg, d) for arg in cmdline[:2] for d in build_dirs):
        found.add("gapseal-service")
    return sorted(found)


def _under(path: str, directory: str) -> bool:
    return os.path.isabs(path) and (path + "/").startswith(directory.rstrip("/") + "/")


def _flag_value(cmdline: list[str], flag: str) -> str | None:
    for i, arg in enumerate(cmdline):
        if arg == flag:
            nxt = cmdline[i + 1] if i + 1 < len(cmdline) else None
            return nxt if nxt is not None and not nxt.startswith("-") else "true"
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def evaluate(service: str, environment: dict[str, str] | None, cmdline: list[str]) -> list[TelemetryRequirement]:
    """Check every requirement of ``service``; with ``environment`` None (unreadable) nothing is satisfied."""
    out = []
    for purpose, switches in REQUIREMENTS.get(service, []):
        checked = []
        for s in switches:
            if s.variable.startswith("--"):
                value = _flag_value(cmdline, s.variable)
            else:
                value = None if environment is None else environment.get(s.variable)
            ok = environment is not None and s.satisfied_by(value)
            checked.append(TelemetrySwitch(variable=s.variable, expected=s.expected, value=value, satisfied=ok))
        out.append(
            TelemetryRequirement(
                service=service, purpose=purpose, any_of=checked, satisfied=any(c.satisfied for c in checked)
            )
        )
    return out


def collect_telemetry(
    store: RawStore, processes: ProcessesFacts, units: list[Unit], root: Path, build_dirs: Sequence[str] = ()
) -> TelemetryFacts:
    """Telemetry switches of every inference process (this namespace) and every inference systemd unit."""
    trace = Trace(store)
    services: list[InferenceService] = []
    for proc in processes.inference:
        env = proc.environment if proc.environ_readable else None
        for name in proc.services:
            reqs = evaluate(name, env, proc.cmdline)
            services.append(
                InferenceService(
                    service=name,
                    origin="process",
                    location=f"pid:{proc.pid}",
                    environment_known=proc.environ_readable,
                    requirements=reqs,
                    telemetry_disabled=all(r.satisfied for r in reqs),
                )
            )
    for unit in units:
        names = recognise(unit.exec_start, unit.environment, build_dirs)
        if not names:
            continue
        for f in unit.files:
            trace.read(f, store=False)  # unit and environment files may hold API keys: hashed, not stored
        for name in names:
            reqs = evaluate(name, unit.environment, unit.exec_start)
            services.append(
                InferenceService(
                    service=name,
                    origin="systemd_unit",
                    location=str(unit.path),
                    environment_known=True,
                    requirements=reqs,
                    telemetry_disabled=all(r.satisfied for r in reqs),
                )
            )
    violations = [f"{s.service}@{s.location}: {r.purpose}" for s in services for r in s.requirements if not r.satisfied]
    status = processes.status
    reason = None if status == "ok" else f"processes could not be scanned: {processes.reason}"
    return TelemetryFacts(
        status=status,
        reason=reason,
        sources=processes.sources + trace.sources,
        services=services,
        violations=violations,
    )
