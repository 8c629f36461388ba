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

A switch whose variable starts with ``--`` is a command-line flag. A service is recognised by what runs, not only by
its command line:

- its command line (program name, ``python -m <module>``, ``uvicorn <module>:app``);
- its environment: variables only a stack reads (``VLLM_*``, ``OLLAMA_*``, ``HF_*``/``HUGGINGFACE_*``/
  ``TRANSFORMERS_*``, ``OPEN_WEBUI_*``/``WEBUI_*``, ``GRADIO_*``), in a process or a unit;
- the container image of a ``podman run`` in a unit's ``ExecStart=`` or of a Quadlet ``.container`` file
  (``vllm/vllm-openai``, ``huggingface/text-generation-inference``, ``ollama/ollama``, ``open-webui/open-webui``,
  ``ggml-org/llama.cpp``, by the image's last path component, so a copy in the site's registry is recognised too);
  the switches are then read from the *container's* environment (``-e``/``--env``, ``--env-file``, ``--env-host``,
  Quadlet ``Environment=``/``EnvironmentFile=``/``PodmanArgs=``) and its command (``Exec=``, arguments after the
  image), never from the unit's, which podman does not pass into the container;
- Python services that load Hugging Face libraries: a unit whose ``ExecStart=`` runs a Python script importing
  ``transformers``, ``huggingface_hub``, ``sentence_transformers``, ``diffusers``, ``datasets``, ``peft``,
  ``tokenizers`` or ``safetensors``, and a running Python process with the native parts of ``tokenizers`` or
  ``safetensors`` mapped (``/proc/<pid>/maps``);
- a program in an installed build directory, or ``GAPSEAL_SERVICE=<name>[,<name>]`` in its environment.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gapseal.audit.collectors._common import MAX_FILE_BYTES, RawStore, Trace, parse_bool, under_root
from gapseal.audit.collectors._units import Unit, parse_env_assignments, parse_env_file, section_entries
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


_ENV_PREFIXES = {
    "VLLM_": "vllm",
    "OLLAMA_": "ollama",
    "HF_": "huggingface",
    "HUGGINGFACE_": "huggingface",
    "TRANSFORMERS_": "huggingface",
    "OPEN_WEBUI_": "open-webui",
    "WEBUI_": "open-webui",
    "GRADIO_": "gradio",
}
"""Environment variable prefixes only one stack reads (its documented configuration variables)."""

IMAGES = {
    "vllm-openai": "vllm",
    "vllm": "vllm",
    "text-generation-inference": "tgi",
    "ollama": "ollama",
    "open-webui": "open-webui",
    "llama.cpp": "llama.cpp",
}
"""Last path component of a container image repository -> service (vllm/vllm-openai, ghcr.io/huggingface/
text-generation-inference, ollama/ollama, ghcr.io/open-webui/open-webui, ghcr.io/ggml-org/llama.cpp)."""

HF_MODULES = (
    "transformers",
    "huggingface_hub",
    "sentence_transformers",
    "diffusers",
    "datasets",
    "peft",
    "tokenizers",
    "safetensors",
)
_HF_IMPORT = re.compile(rf"^\s*(?:from|import)\s+(?:{'|'.join(HF_MODULES)})\b", re.MULTILINE)
HF_LIBRARY_MARKERS = ("/tokenizers/", "/safetensors/")
"""Path parts of the native extensions ``tokenizers`` and ``safetensors`` load (both ship a Rust ``.so``)."""


def recognise_how(
    cmdline: list[str],
    environment: dict[str, str],
    build_dirs: Sequence[str] = (),
    loaded: Sequence[str] = (),
) -> dict[str, str]:
    """Name the inference services what runs shows, each with what showed it (see the module docstring).

    ``loaded``: paths of the shared objects a running process has mapped (``/proc/<pid>/maps``).
    """
    found: dict[str, str] = {}
    for name in environment.get(SERVICE_MARKER, "").split(","):
        name = name.strip()
        if name:
            found.setdefault(name if name in REQUIREMENTS else "gapseal-service", "marker")
    args = cmdline[:8]
    for i, arg in enumerate(args):
        base = os.path.basename(arg)
        if base in _PROGRAMS and (i == 0 or os.path.basename(args[0]).startswith("python") or i == 1):
            found.setdefault(_PROGRAMS[base], "command")
        if arg == "-m" and i + 1 < len(args):
            module = args[i + 1].split(".", 1)[0]
            if module in _MODULES:
                found.setdefault(_MODULES[module], "command")
        if ":" in arg and arg.split(".", 1)[0] in _MODULES and not arg.startswith("-"):  # uvicorn open_webui.main:app
            found.setdefault(_MODULES[arg.split(".", 1)[0]], "command")
    if not found:  # configuration variables (not the switches themselves) name the stack when nothing else did
        for key in environment:
            for prefix, name in _ENV_PREFIXES.items():
                if key.startswith(prefix) and key not in TELEMETRY_VARIABLES:
                    found.setdefault(name, "environment")
    if not found and any(marker in path for path in loaded for marker in HF_LIBRARY_MARKERS):
        found["huggingface"] = "loaded-library"
    if not found and any(_under(arg, d) for arg in cmdline[:2] for d in build_dirs):
        found["gapseal-service"] = "install-dir"
    return dict(sorted(found.items()))


def recognise(
    cmdline: list[str], environment: dict[str, str], build_dirs: Sequence[str] = (), loaded: Sequence[str] = ()
) -> list[str]:
    """Name the inference services a command line, environment, marker, mapped library or installed program shows."""
    return list(recognise_how(cmdline, environment, build_dirs, loaded))


def recognise_image(image: str) -> str | None:
    """The service a container image runs, by the last component of its repository (tag and digest ignored)."""
    repo = image.split("@", 1)[0]
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:
        last = last.split(":", 1)[0]
    return IMAGES.get(last.lower())


def imports_hugging_face(script: str) -> bool:
    """True when Python source imports a Hugging Face library (``import transformers``, ``from diffusers import``)."""
    return _HF_IMPORT.search(script) is not None


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


QUADLET_DIRS = ("etc/containers/systemd", "run/containers/systemd", "usr/share/containers/systemd")
"""Where podman's Quadlet generator looks for ``.container`` files (system units; subdirectories too)."""
_PODMAN_RUN = {"run", "create"}
_ENGINES = {"podman", "docker", "nerdctl"}
"""Container engines whose ``run`` takes the same ``-e``/``--env``/``--env-file`` options and ``IMAGE [CMD]``."""
_GLOBAL_VALUE_OPTIONS = frozenset(
    {
        "--log-level", "--root", "--runroot", "--storage-driver", "--storage-opt", "--cgroup-manager",
        "--events-backend", "--runtime", "--url", "--connection", "-c", "--identity", "--tmpdir", "--config",
        "--context", "-H", "--host", "--namespace", "-n", "--network-cmd-path", "--conmon", "--module",
        "--hooks-dir", "--volumepath",
    }
)  # fmt: skip
"""Global options of podman/docker/nerdctl that take their value as the next word."""


@dataclass
class Container:
    """A container a unit or Quadlet file runs: its image, its own environment and its command arguments."""

    image: str
    service: str
    environment: dict[str, str]
    command: list[str]
    files: list[Path]


def _env_option(arg: str, nxt: str | None) -> tuple[str, str | None, bool] | None:
    """``(option, value, consumed_next)`` for ``-e``/``--env``/``--env-file`` forms, else None."""
    for opt in ("--env-file", "--env", "-e"):
        if arg == opt:
            return opt, nxt, True
        if arg.startswith(opt + "=") and opt != "-e":
            return opt, arg.split("=", 1)[1], False
        if opt == "-e" and arg.startswith("-e") and len(arg) > 2:
            return opt, arg[2:], False
    return None


def _container_env(args: list[str], host_env: dict[str, str], root: Path, files: list[Path]) -> dict[str, str]:
    """The environment podman gives a container from ``args`` (``host_env``: the unit's, for ``-e KEY``)."""
    env: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else None
        if arg == "--env-host" or arg == "--env-host=true":
            env.update(host_env)
        opt = _env_option(arg, nxt)
        name, value, consumed = opt if opt is not None else ("", None, False)
        if value is not None:
            if name == "--env-file":
                path = under_root(root, value)
                text = _read_limited(path)
                if text is not None:
                    files.append(path)
                    env.update({k: v for _, k, v in parse_env_file(text)})
            elif "=" in value:
                k, _, v = value.partition("=")
                env[k] = v
            elif value in host_env:
                env[value] = host_env[value]
            i += 2 if consumed else 1
            continue
        i += 1
    return env


def _read_limited(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            return f.read(MAX_FILE_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None


def podman_run_container(unit: Unit, root: Path) -> Container | None:
    """The known server a unit's ``ExecStart=podman [options] run ... IMAGE [CMD]`` runs (docker, nerdctl too)."""
    argv = unit.exec_start
    if not argv or os.path.basename(argv[0]) not in _ENGINES:
        return None
    rest = argv[1:]
    while rest and rest[0].startswith("-"):  # global options before the subcommand (podman --log-level info run ...)
        rest = rest[2:] if rest[0] in _GLOBAL_VALUE_OPTIONS else rest[1:]
    if rest[:1] == ["container"]:
        rest = rest[1:]
    if not rest or rest[0] not in _PODMAN_RUN:
        return None
    args = rest[1:]
    words = [i for i, a in enumerate(args) if not a.startswith("-") and not (i > 0 and _takes_value(args[i - 1]))]
    # The image is the first word that is neither an option nor an option's value. Should an unlisted option's
    # value come first, the first word naming a known server is taken instead: a server is never missed.
    candidates = words[:1] + [i for i in words[1:] if recognise_image(args[i]) is not None]
    for i in candidates:
        service = recognise_image(args[i])
        if service is not None:
            files: list[Path] = []
            env = _container_env(args[:i], unit.environment, root, files)
            return Container(image=args[i], service=service, environment=env, command=args[i + 1 :], files=files)
    return None


_VALUE_OPTIONS = frozenset(
    [
        "-a",
        "--attach",
        "--add-host",
        "--annotation",
        "--arch",
        "--authfile",
        "--blkio-weight",
        "--blkio-weight-device",
        "--cap-add",
        "--cap-drop",
        "--cgroup-conf",
        "--cgroup-parent",
        "--cgroupns",
        "--cgroups",
        "--chrootdirs",
        "--cidfile",
        "--conmon-pidfile",
        "--cpu-period",
        "--cpu-quota",
        "--cpu-rt-period",
        "--cpu-rt-runtime",
        "-c",
        "--cpu-shares",
        "--cpus",
        "--cpuset-cpus",
        "--cpuset-mems",
        "--decryption-key",
        "--detach-keys",
        "--device",
        "--device-cgroup-rule",
        "--device-read-bps",
        "--device-read-iops",
        "--device-write-bps",
        "--device-write-iops",
        "--dns",
        "--dns-option",
        "--dns-search",
        "--entrypoint",
        "-e",
        "--env",
        "--env-file",
        "--env-merge",
        "--expose",
        "--gidmap",
        "--gpus",
        "--group-add",
        "--group-entry",
        "--health-cmd",
        "--health-interval",
        "--health-retries",
        "--health-start-period",
        "--health-timeout",
        "--health-on-failure",
        "-h",
        "--hostname",
        "--hostuser",
        "--image-volume",
        "--init-path",
        "--ip",
        "--ip6",
        "--ipc",
        "-l",
        "--label",
        "--label-file",
        "--log-driver",
        "--log-opt",
        "--mac-address",
        "-m",
        "--memory",
        "--memory-reservation",
        "--memory-swap",
        "--memory-swappiness",
        "--mount",
        "--name",
        "--net",
        "--network",
        "--network-alias",
        "--oom-score-adj",
        "--os",
        "--passwd-entry",
        "--personality",
        "--pid",
        "--pidfile",
        "--pids-limit",
        "--platform",
        "--pod",
        "--pod-id-file",
        "--preserve-fds",
        "-p",
        "--publish",
        "--pull",
        "--requires",
        "--restart",
        "--sdnotify",
        "--seccomp-policy",
        "--secret",
        "--security-opt",
        "--shm-size",
        "--shm-size-systemd",
        "--stop-signal",
        "--stop-timeout",
        "--subgidname",
        "--subuidname",
        "--sysctl",
        "--systemd",
        "--timeout",
        "--tmpfs",
        "--tz",
        "--uidmap",
        "--ulimit",
        "--umask",
        "-u",
        "--user",
        "--userns",
        "--uts",
        "--variant",
        "-v",
        "--volume",
        "--volumes-from",
        "-w",
        "--workdir",
    ]
)
"""podman-run(1) options that take their value as the next word (so that word is never the image)."""


def _takes_value(option: str) -> bool:
    """True for an option of ``podman run`` written with its value as the next word."""
    return option in _VALUE_OPTIONS


def quadlet_containers(trace: Trace, root: Path) -> list[tuple[Path, Container | None, str | None]]:
    """Every Quadlet ``.container`` file: ``(path, container, image)``; container None when the image is unknown."""
    dirs = [root / d for d in QUADLET_DIRS]
    home = root / "home"
    if home.is_dir():
        dirs += [h / ".config/containers/systemd" for h in sorted(home.iterdir()) if h.is_dir()]
    dirs.append(root / "root/.config/containers/systemd")
    out: list[tuple[Path, Container | None, str | None]] = []
    seen: set[str] = set()
    for d in dirs:
        if not d.is_dir():
            continue
        for path in sorted(d.rglob("*.container")):
            if path.name in seen or not path.is_file():
                continue  # the first directory wins, as for units
            seen.add(path.name)
            parts = [path, *sorted((path.parent / f"{path.name}.d").glob("*.conf"))]
            image: str | None = None
            env_lines: list[str] = []
            env_files: list[str] = []
            exec_args: list[str] = []
            podman_args: list[str] = []
            files: list[Path] = []
            for part in parts:
                text = trace.read_text(part, store=False)
                if text is None:
                    continue
                files.append(part)
                for _, key, value in section_entries(text, "Container"):
                    if key == "Image":
                        image = value
                    elif key == "Environment":
                        env_lines.append(value)
                    elif key == "EnvironmentFile":
                        env_files.append(value)
                    elif key == "Exec":
                        exec_args = _split(value)
                    elif key == "PodmanArgs":
                        podman_args += _split(value)
            service = recognise_image(image) if image else None
            if image is None or service is None:
                out.append((path, None, image))
                continue
            env: dict[str, str] = {}
            for f in env_files:
                p = under_root(root, f.lstrip("-"))
                t = _read_limited(p)
                if t is not None:
                    files.append(p)
                    env.update({k: v for _, k, v in parse_env_file(t)})
            for value in env_lines:
                env.update(dict(parse_env_assignments(value)))
            env.update(_container_env(podman_args, {}, root, files))
            out.append((path, Container(image, service, env, exec_args, files), image))
    return out


def _split(value: str) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError:
        return value.split()


def python_script(unit: Unit, root: Path) -> Path | None:
    """The Python script a unit's ``ExecStart=`` runs (``python3 /app/serve.py`` or a ``#!…python`` script)."""
    argv = unit.exec_start
    if not argv:
        return None
    if os.path.basename(argv[0]).startswith("python"):
        script = next((a for a in argv[1:] if not a.startswith("-")), None)
        if script is None or (len(argv) > 1 and argv[1] == "-m"):
            return None
        return under_root(root, script) if os.path.isabs(script) else None
    path = under_root(root, argv[0]) if os.path.isabs(argv[0]) else None
    if path is None:
        return None
    head = _read_limited(path)
    if head is not None and head.startswith("#!") and "python" in head.split("\n", 1)[0]:
        return path
    return None


def _service(
    name: str,
    origin: str,
    location: str,
    environment: dict[str, str],
    command: list[str],
    *,
    how: str,
    image: str | None = None,
) -> InferenceService:
    reqs = evaluate(name, environment, command)
    return InferenceService(
        service=name,
        origin=origin,
        location=location,
        environment_known=True,
        requirements=reqs,
        telemetry_disabled=all(r.satisfied for r in reqs),
        image=image,
        recognised_by=how,
    )


_EXPOSURE = re.compile(r"Overall exposure level for (\S+): ([0-9]+(?:\.[0-9]+)?) ([A-Z]+)")


def _with_exposure(trace: Trace, service: InferenceService) -> InferenceService:
    """Add ``systemd-analyze security``'s overall exposure of a loaded unit (live host only; else left unknown)."""
    if service.origin != "systemd_unit" or not service.location.endswith(".service"):
        return service
    unit = os.path.basename(service.location)
    out = trace.run(["systemd-analyze", "security", "--no-pager", unit])
    match = _EXPOSURE.search(out.text) if out.ok else None
    if match is None:
        return service
    return service.model_copy(update={"exposure": float(match.group(2)), "exposure_rating": match.group(3)})


def collect_telemetry(
    store: RawStore, processes: ProcessesFacts, units: list[Unit], root: Path, build_dirs: Sequence[str] = ()
) -> TelemetryFacts:
    """Telemetry switches of every inference process (this namespace), systemd unit and Quadlet container."""
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
                    recognised_by=proc.recognised_by.get(name),
                )
            )
    for unit in units:
        container = podman_run_container(unit, root)
        found = {} if container is not None else recognise_how(unit.exec_start, unit.environment, build_dirs)
        script = python_script(unit, root) if container is None else None
        script_text = trace.read_text(script, store=False) if script is not None else None
        if script_text is not None and imports_hugging_face(script_text):
            found.setdefault("huggingface", "python-imports")
        if not found and container is None:
            continue
        for f in unit.files:
            trace.read(f, store=False)  # unit and environment files may hold API keys: hashed, not stored
        if container is not None:
            for f in container.files:
                trace.read(f, store=False)
            services.append(
                _service(
                    container.service,
                    "systemd_unit",
                    str(unit.path),
                    container.environment,
                    container.command,
                    how="image",
                    image=container.image,
                )
            )
        for name, how in found.items():
            services.append(_service(name, "systemd_unit", str(unit.path), unit.environment, unit.exec_start, how=how))
    if root == Path("/"):
        services = [_with_exposure(trace, s) for s in services]
    for path, qc, _image in quadlet_containers(trace, root):
        if qc is None:
            continue
        services.append(
            _service(qc.service, "quadlet", str(path), qc.environment, qc.command, how="image", image=qc.image)
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
