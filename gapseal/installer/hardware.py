"""Host hardware facts from the tools' own output: NVIDIA, ROCm, Vulkan and the CPU.

Parsing is pure (text in, a frozen model out) and shared by two callers: the ``gapseal_hardware`` Ansible action
plugin, whose module runs the tools on each host and returns their raw output (:class:`HardwareProbe`), and
``gapseal hosts detect`` on the local machine (:func:`detect_local_hardware`).

Rules that decide what the model claims:

* A tool that is not installed means "no such GPU": it is listed in ``HostHardware.tools_absent`` and nothing else.
* A tool that is installed but fails (non-zero exit, timeout, output that does not parse) is recorded in
  ``HostHardware.probe_errors`` with its exit code and message, and that GPU family is reported as unknown (``None``),
  never silently as absent.
* ``nvidia-smi -q -x`` (DTD v11 for R470/R515, v12 for R525-R575, v13 from R580) has no compute capability element.
  Compute capability comes from ``nvidia-smi --query-gpu=name,compute_cap,driver_version,uuid --format=csv`` (R525 and
  later). On R470 that query fails (``Field "compute_cap" is not a valid field to query.``, exit 2): each GPU then has
  ``compute_capability=None`` and ``compute_capability_unknown_reason`` says why.
* ``rocminfo`` lists CPU and GPU agents; only ``Device Type: GPU`` agents count. An MI250X shows two agents (GCDs) per
  card; an APU's integrated GPU is listed as a GPU agent too. ANSI colour codes are stripped.
* ``vulkaninfo --summary`` lists every device, software rasterizers included. Only devices whose ``deviceType`` is
  ``PHYSICAL_DEVICE_TYPE_DISCRETE_GPU``, ``..._INTEGRATED_GPU`` or ``..._VIRTUAL_GPU`` count as GPUs
  (:attr:`VulkanDevice.is_gpu`); ``..._CPU`` (llvmpipe/lavapipe, SwiftShader) and ``..._OTHER`` never satisfy a Vulkan
  GPU requirement. ``apiVersion`` is read from the dotted form, or decoded from the raw number older versions print.
* ``/proc/cpuinfo``: the ``flags`` line on x86 (never ``vmx flags``), the ``Features`` line on arm64; a flag counts only
  if every processor lists it. The architecture comes from ``uname -m``, mapped to Go/OCI names (amd64, arm64, ...).

XML safety: nvidia-smi output is parsed with :mod:`xml.etree.ElementTree` (expat, which never fetches external
entities) after refusing any document that declares entities or an internal DTD subset, so entity-expansion attacks
("billion laughs") cannot reach the parser. No extra dependency is needed.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET  # noqa: S405 - guarded by _refuse_unsafe_xml before every parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gapseal.bundler.elf import parse_ldconfig
from gapseal.errors import InstallError

__all__ = [
    "HARDWARE_KIND",
    "PROBE_COMMANDS",
    "CPUINFO_PATH",
    "HardwareParseError",
    "HardwareProbe",
    "HostHardware",
    "NvidiaGpu",
    "NvidiaInfo",
    "ProbeError",
    "RocmAgent",
    "RocmInfo",
    "ToolOutput",
    "VulkanDevice",
    "VulkanInfo",
    "detect_local_hardware",
    "hardware_from_probe",
    "hardware_schema",
    "normalize_arch",
    "parse_cpu_flags",
    "parse_nvidia_compute_caps",
    "parse_nvidia_smi_xml",
    "parse_rocminfo",
    "parse_vulkaninfo_summary",
    "probe_local",
]

HARDWARE_KIND: Literal["gapseal.HostHardware"] = "gapseal.HostHardware"

#: The commands every probe runs, by probe name. The Ansible module (playbooks/library/gapseal_host_state.py) carries
#: the same table because it must run on hosts without gapseal; a unit test keeps the two equal.
PROBE_COMMANDS: dict[str, list[str]] = {
    "nvidia_smi_xml": ["nvidia-smi", "-q", "-x"],
    "nvidia_smi_query": ["nvidia-smi", "--query-gpu=name,compute_cap,driver_version,uuid", "--format=csv"],
    "rocminfo": ["rocminfo"],
    "vulkaninfo": ["vulkaninfo", "--summary"],
    "uname_m": ["uname", "-m"],
    "glibc": ["getconf", "GNU_LIBC_VERSION"],
    "ldconfig": ["ldconfig", "-p"],
}
CPUINFO_PATH = "/proc/cpuinfo"
PROBE_TIMEOUT_SECONDS = 60

_NOT_A_VALUE = {"", "n/a", "[n/a]", "not found", "none", "[not supported]", "not supported", "unknown error"}


class HardwareParseError(InstallError):
    """A hardware tool's output that cannot be parsed (truncated, garbage, unsafe XML)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------------------- models


class NvidiaGpu(_Model):
    """One physical NVIDIA GPU as ``nvidia-smi`` reports it."""

    index: int = Field(description="Position in nvidia-smi's listing (0-based, PCI bus order).")
    name: str = Field(description="Product name, e.g. 'NVIDIA A100-SXM4-40GB'.")
    uuid: str | None = Field(description="GPU UUID ('GPU-...'), None if nvidia-smi printed N/A.")
    pci_bus_id: str | None = Field(description="PCI bus id, e.g. '00000000:01:00.0'.")
    architecture: str | None = Field(description="product_architecture (DTD v11+), e.g. 'Ampere'; None if absent.")
    memory_total_mib: int | None = Field(description="Framebuffer memory total in MiB; None if N/A.")
    mig_mode: str | None = Field(description="Current MIG mode ('Enabled'/'Disabled'); None where MIG is N/A.")
    mig_devices: int = Field(description="Number of MIG devices (instances) listed under this GPU.")
    compute_capability: str | None = Field(description="CUDA compute capability 'major.minor'; None when unknown.")
    compute_capability_unknown_reason: str | None = Field(
        description="Why compute_capability is None (e.g. R470 has no compute_cap field); None when it is known."
    )


class NvidiaInfo(_Model):
    """The NVIDIA driver and its GPUs, from ``nvidia-smi -q -x`` plus the compute_cap query."""

    driver_version: str = Field(description="Driver version, e.g. '535.104.05'.")
    driver_branch: int | None = Field(description="Driver major version (the 'R' branch, e.g. 535); None if odd.")
    cuda_version: str | None = Field(description="Highest CUDA version the driver supports; None if 'Not Found'.")
    dtd_version: str | None = Field(description="The XML's DTD version from its DOCTYPE (e.g. 'v12'); None if absent.")
    attached_gpus: int | None = Field(description="attached_gpus as nvidia-smi states it.")
    gpus: tuple[NvidiaGpu, ...] = Field(description="Every GPU element, in document order.")


class RocmAgent(_Model):
    """One ``Device Type: GPU`` agent from ``rocminfo`` (an MI250X card shows two, one per GCD)."""

    agent: int = Field(description="rocminfo's agent number ('Agent N').")
    name: str = Field(description="The gfx target, e.g. 'gfx942'.")
    marketing_name: str | None = Field(description="Marketing Name, e.g. 'AMD Instinct MI300X'.")
    uuid: str | None = Field(description="Uuid ('GPU-...'), None if not printed.")
    isa: str | None = Field(description="First ISA name, e.g. 'amdgcn-amd-amdhsa--gfx90a:sramecc+:xnack-'.")
    compute_units: int | None = Field(description="Compute Unit count.")
    apu: bool = Field(description="True when rocminfo marks the agent's memory as APU (integrated GPU).")


class RocmInfo(_Model):
    """GPU agents found by ``rocminfo`` (CPU agents are counted, not listed)."""

    gpus: tuple[RocmAgent, ...] = Field(description="GPU agents in rocminfo's order.")
    cpu_agents: int = Field(description="Number of CPU agents listed.")
    runtime_version: str | None = Field(description="HSA Runtime Version.")

    @property
    def gfx_targets(self) -> tuple[str, ...]:
        """Return the distinct gfx targets, sorted."""
        return tuple(sorted({agent.name for agent in self.gpus}))


VULKAN_GPU_TYPES = frozenset(
    {
        "PHYSICAL_DEVICE_TYPE_DISCRETE_GPU",
        "PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU",
        "PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU",
    }
)


class VulkanDevice(_Model):
    """One physical device from ``vulkaninfo --summary``."""

    index: int = Field(description="The N of 'GPUN:' in vulkaninfo's listing.")
    name: str = Field(description="deviceName, e.g. 'llvmpipe (LLVM 15.0.7, 256 bits)'.")
    device_type: str = Field(description="deviceType, e.g. 'PHYSICAL_DEVICE_TYPE_DISCRETE_GPU'.")
    api_version: str = Field(description="Vulkan API version the device supports, dotted ('1.3.255').")
    driver_name: str | None = Field(description="driverName, if printed (e.g. 'llvmpipe', 'NVIDIA').")
    vendor_id: str | None = Field(description="vendorID as printed (e.g. '0x10de').")

    @property
    def is_gpu(self) -> bool:
        """Return whether this device counts as a GPU (discrete, integrated or virtual; never CPU or other)."""
        return self.device_type in VULKAN_GPU_TYPES


class VulkanInfo(_Model):
    """Vulkan instance and devices from ``vulkaninfo --summary``."""

    instance_version: str | None = Field(description="'Vulkan Instance Version', if printed.")
    devices: tuple[VulkanDevice, ...] = Field(description="Every device listed, software rasterizers included.")

    @property
    def gpus(self) -> tuple[VulkanDevice, ...]:
        """Return only the devices that count as GPUs."""
        return tuple(d for d in self.devices if d.is_gpu)


class ProbeError(_Model):
    """A tool that is installed but whose probe failed or whose output did not parse."""

    probe: str = Field(description="Probe name: a key of PROBE_COMMANDS, or 'cpuinfo'.")
    command: str = Field(description="The command line (or file) that was run or read.")
    exit_code: int | None = Field(description="The tool's exit status; None for a timeout or a parse failure.")
    message: str = Field(description="What went wrong, with the tool's own first error line.")


class HostHardware(_Model):
    """What a host has that matters for choosing a build variant."""

    kind: Literal["gapseal.HostHardware"] = Field(default=HARDWARE_KIND, description="Document kind.")
    version: Literal[1] = Field(default=1, description="Schema version.")
    arch: str = Field(description="Architecture in Go/OCI naming: 'amd64', 'arm64', ... or uname's word if unknown.")
    machine: str | None = Field(description="Raw `uname -m` output; None when uname could not run.")
    cpu_flags: tuple[str, ...] = Field(description="CPU flags every processor has (sorted, lower case).")
    nvidia: NvidiaInfo | None = Field(description="NVIDIA driver and GPUs; None if nvidia-smi is absent or failed.")
    rocm: RocmInfo | None = Field(description="ROCm GPU agents; None if rocminfo is absent or failed.")
    vulkan: VulkanInfo | None = Field(description="Vulkan devices; None if vulkaninfo is absent or failed.")
    glibc: str | None = Field(
        default=None, description="The C library's version from `getconf GNU_LIBC_VERSION` ('2.36'); None if unknown."
    )
    loader_libraries: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Libraries in the dynamic loader's cache (`ldconfig -p`): name -> flags such as 'x86-64'.",
    )
    tools_absent: tuple[str, ...] = Field(description="Tools that are not installed (so: no such GPU).")
    probe_errors: tuple[ProbeError, ...] = Field(description="Tools that are installed but failed, with why.")

    def probe_error(self, probe: str) -> ProbeError | None:
        """Return the recorded error of probe ``probe``, if any."""
        return next((e for e in self.probe_errors if e.probe == probe), None)


class ToolOutput(_Model):
    """The raw result of running one probe on a host (what the Ansible module returns per probe)."""

    present: bool = Field(description="False when the tool (or file) does not exist on the host.")
    rc: int | None = Field(default=None, description="Exit status; None when absent or not run to completion.")
    stdout: str = Field(default="", description="Standard output (file content for cpuinfo).")
    stderr: str = Field(default="", description="Standard error.")
    error: str | None = Field(default=None, description="Why the tool could not be run (timeout, OS error).")


class HardwareProbe(_Model):
    """The raw outputs of every probe on one host: the Ansible module's ``probes`` return value."""

    nvidia_smi_xml: ToolOutput = Field(description="`nvidia-smi -q -x`.")
    nvidia_smi_query: ToolOutput = Field(description="`nvidia-smi --query-gpu=name,compute_cap,... --format=csv`.")
    rocminfo: ToolOutput = Field(description="`rocminfo`.")
    vulkaninfo: ToolOutput = Field(description="`vulkaninfo --summary`.")
    cpuinfo: ToolOutput = Field(description="Content of /proc/cpuinfo.")
    uname_m: ToolOutput = Field(description="`uname -m`.")
    glibc: ToolOutput = Field(
        default_factory=lambda: ToolOutput(present=False), description="`getconf GNU_LIBC_VERSION`."
    )
    ldconfig: ToolOutput = Field(default_factory=lambda: ToolOutput(present=False), description="`ldconfig -p`.")


def hardware_schema() -> dict[str, Any]:
    """Return the JSON Schema of :class:`HostHardware` (published as schemas/host-hardware.v1.schema.json)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://gapseal.invalid/schemas/host-hardware.v1.schema.json",
        **HostHardware.model_json_schema(),
    }


# -------------------------------------------------------------------------------------------------------- helpers

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _value(text: str | None) -> str | None:
    """Return the stripped text, or None for nvidia-smi's not-a-value words (N/A, Not Found, ...)."""
    if text is None:
        return None
    cleaned = " ".join(text.split())
    return None if cleaned.lower() in _NOT_A_VALUE else cleaned


def _first_line(text: str) -> str:
    for line in _strip_ansi(text).splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


def _int_prefix(text: str | None) -> int | None:
    if text is None:
        return None
    match = re.match(r"\s*(\d+)", text)
    return int(match.group(1)) if match else None


# ----------------------------------------------------------------------------------------------------- nvidia-smi

_DOCTYPE_DTD = re.compile(r"<!DOCTYPE\s+nvidia_smi_log\s+SYSTEM\s+\"nvsmi_device_(v\d+)\.dtd\"")


def _refuse_unsafe_xml(text: str, where: str) -> None:
    lowered = text.lower()
    if "<!entity" in lowered:
        raise HardwareParseError("XML declares entities; refusing to parse it", where=where)
    doctype = re.search(r"<!doctype[^>\[]*\[", lowered)
    if doctype:
        raise HardwareParseError("XML carries an internal DTD subset; refusing to parse it", where=where)


def parse_nvidia_smi_xml(text: str, *, where: str = "nvidia-smi -q -x") -> NvidiaInfo:
    """Parse ``nvidia-smi -q -x`` output (any DTD version) into driver, CUDA version and GPUs.

    Compute capability is never in this XML: every GPU comes back with ``compute_capability=None`` and a reason;
    :func:`parse_nvidia_compute_caps` and :func:`hardware_from_probe` fill it in. Raises :class:`HardwareParseError`
    for output that is not a complete ``nvidia_smi_log`` document or lacks a driver version.
    """
    _refuse_unsafe_xml(text, where)
    start = min((i for i in (text.find("<?xml"), text.find("<nvidia_smi_log")) if i >= 0), default=0)
    try:  # warnings nvidia-smi prints before the document (e.g. "WARNING: infoROM is corrupted") are skipped
        root = ET.fromstring(text[start:].strip())  # noqa: S314 - entities and internal subsets refused above
    except ET.ParseError as e:
        raise HardwareParseError(
            f"nvidia-smi XML does not parse ({e}); the output is truncated or not XML",
            where=where,
            hint="run `nvidia-smi -q -x` on the host and check it completes",
        ) from e
    if root.tag != "nvidia_smi_log":
        raise HardwareParseError(f"expected <nvidia_smi_log>, got <{root.tag}>", where=where)
    driver = _value(root.findtext("driver_version"))
    if driver is None:
        raise HardwareParseError("nvidia-smi XML has no driver_version", where=where)
    dtd = _DOCTYPE_DTD.search(text)
    gpus = []
    for index, gpu in enumerate(root.findall("gpu")):
        name = _value(gpu.findtext("product_name"))
        if name is None:
            raise HardwareParseError(f"GPU {index} has no product_name", where=where)
        mig_devices = gpu.find("mig_devices")
        gpus.append(
            NvidiaGpu(
                index=index,
                name=name,
                uuid=_value(gpu.findtext("uuid")),
                pci_bus_id=_value(gpu.findtext("pci/pci_bus_id")) or _value(gpu.get("id")),
                architecture=_value(gpu.findtext("product_architecture")),
                memory_total_mib=_int_prefix(_value(gpu.findtext("fb_memory_usage/total"))),
                mig_mode=_value(gpu.findtext("mig_mode/current_mig")),
                mig_devices=len(mig_devices.findall("mig_device")) if mig_devices is not None else 0,
                compute_capability=None,
                compute_capability_unknown_reason="compute capability is not in nvidia-smi -q -x output",
            )
        )
    return NvidiaInfo(
        driver_version=driver,
        driver_branch=_int_prefix(driver),
        cuda_version=_value(root.findtext("cuda_version")),
        dtd_version=dtd.group(1) if dtd else None,
        attached_gpus=_int_prefix(_value(root.findtext("attached_gpus"))),
        gpus=tuple(gpus),
    )


class ComputeCapRow(_Model):
    """One row of the compute_cap query."""

    name: str | None = Field(description="GPU name column, if queried.")
    uuid: str | None = Field(description="GPU uuid column, if queried.")
    compute_cap: str | None = Field(description="compute_cap value ('8.0'); None for N/A.")


_COMPUTE_CAP = re.compile(r"^\d+\.\d+$")


def parse_nvidia_compute_caps(text: str, *, where: str = "nvidia-smi --query-gpu") -> tuple[ComputeCapRow, ...]:
    """Parse the CSV of ``nvidia-smi --query-gpu=...,compute_cap,... --format=csv``.

    Columns are found by the header (``compute_cap`` required; ``name``/``uuid`` used to match GPUs when present), so
    any column order works. Raises :class:`HardwareParseError` when there is no ``compute_cap`` column or a value is
    neither ``N/A`` nor ``major.minor``.
    """
    lines = [line for line in _strip_ansi(text).splitlines() if line.strip()]
    if not lines:
        raise HardwareParseError("compute_cap query printed nothing", where=where)
    reader = csv.reader(io.StringIO("\n".join(lines)), skipinitialspace=True)
    rows = list(reader)
    header = [h.strip().lower() for h in rows[0]]
    if "compute_cap" not in header:
        raise HardwareParseError(f"compute_cap query has no compute_cap column: {_first_line(text)!r}", where=where)
    col = {name: header.index(name) for name in ("name", "uuid", "compute_cap") if name in header}
    out = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise HardwareParseError(
                f"compute_cap query line {number} has {len(row)} fields, header has {len(header)}", where=where
            )
        cap = _value(row[col["compute_cap"]])
        if cap is not None and not _COMPUTE_CAP.match(cap):
            raise HardwareParseError(f"compute_cap {cap!r} on line {number} is not major.minor", where=where)
        out.append(
            ComputeCapRow(
                name=_value(row[col["name"]]) if "name" in col else None,
                uuid=_value(row[col["uuid"]]) if "uuid" in col else None,
                compute_cap=cap,
            )
        )
    return tuple(out)


def _with_compute_caps(info: NvidiaInfo, query: ToolOutput, errors: list[ProbeError]) -> NvidiaInfo:
    """Return ``info`` with each GPU's compute capability (or the reason it is unknown) from the query's output."""
    command = " ".join(PROBE_COMMANDS["nvidia_smi_query"])

    def unknown(reason: str) -> NvidiaInfo:
        gpus = tuple(g.model_copy(update={"compute_capability_unknown_reason": reason}) for g in info.gpus)
        return info.model_copy(update={"gpus": gpus})

    branch = f"R{info.driver_branch}" if info.driver_branch is not None else f"driver {info.driver_version}"
    if not query.present:
        return unknown("compute_cap query was not run")
    combined = f"{query.stdout}\n{query.stderr}"
    if query.rc != 0:
        first = _first_line(combined) or query.error or "no output"
        errors.append(ProbeError(probe="nvidia_smi_query", command=command, exit_code=query.rc, message=first))
        if "is not a valid field to query" in combined and "compute_cap" in combined:
            return unknown(f"nvidia-smi {branch} has no compute_cap field")
        return unknown(f"compute_cap query failed (exit {query.rc}): {first}")
    try:
        rows = parse_nvidia_compute_caps(query.stdout)
    except HardwareParseError as e:
        errors.append(ProbeError(probe="nvidia_smi_query", command=command, exit_code=query.rc, message=e.message))
        return unknown(f"compute_cap query output unreadable: {e.message}")
    by_uuid = {r.uuid: r for r in rows if r.uuid}
    gpus = []
    for position, gpu in enumerate(info.gpus):
        row: ComputeCapRow | None = None
        if gpu.uuid and gpu.uuid in by_uuid:
            row = by_uuid[gpu.uuid]
        elif not by_uuid and len(rows) == len(info.gpus):
            candidate = rows[position]
            if candidate.name is None or candidate.name == gpu.name:
                row = candidate
        if row is None:
            reason = "compute_cap query does not list this GPU"
            gpus.append(gpu.model_copy(update={"compute_capability_unknown_reason": reason}))
        elif row.compute_cap is None:
            reason = "nvidia-smi reports compute_cap as N/A"
            gpus.append(gpu.model_copy(update={"compute_capability_unknown_reason": reason}))
        else:
            update = {"compute_capability": row.compute_cap, "compute_capability_unknown_reason": None}
            gpus.append(gpu.model_copy(update=update))
    return info.model_copy(update={"gpus": tuple(gpus)})


# ------------------------------------------------------------------------------------------------------- rocminfo

_AGENT_HEADER = re.compile(r"^\s*Agent\s+(\d+)\s*$")
_TOP_FIELD = re.compile(r"^ {2}(\S[^:]*?):\s*(.*?)\s*$")
_ISA_NAME = re.compile(r"^\s+Name:\s*(amdgcn-\S+)")


def _rocm_uuid(text: str | None) -> str | None:
    """Return the agent's Uuid, or None for rocminfo's placeholder ('GPU-XX', printed when there is no unique id)."""
    value = _value(text)
    return None if value is None or value.upper().endswith("-XX") else value


def parse_rocminfo(text: str, *, where: str = "rocminfo") -> RocmInfo:
    """Parse ``rocminfo`` output into its GPU agents (colour codes stripped, CPU agents counted).

    Raises :class:`HardwareParseError` when there is no ``HSA Agents`` section, no agent, or a GPU agent without a
    ``gfx`` name (a truncated listing).
    """
    clean = _strip_ansi(text).replace("\r\n", "\n")
    if "HSA Agents" not in clean:
        raise HardwareParseError(
            f"rocminfo output has no 'HSA Agents' section (first line: {_first_line(text)!r})", where=where
        )
    runtime = re.search(r"^Runtime Version:\s*(\S+)", clean, re.MULTILINE)
    agents: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in clean.split("\n"):
        header = _AGENT_HEADER.match(line)
        if header:
            current = {"#": header.group(1)}
            agents.append(current)
            continue
        if current is None:
            continue
        isa = _ISA_NAME.match(line)
        if isa and "isa" not in current:
            current["isa"] = isa.group(1)
            continue
        field = _TOP_FIELD.match(line)
        if field and field.group(1) not in current:
            current[field.group(1)] = field.group(2)
    if not agents:
        raise HardwareParseError("rocminfo lists no agents", where=where)
    gpus = []
    cpus = 0
    for agent in agents:
        device_type = agent.get("Device Type", "").strip().upper()
        if device_type == "CPU":
            cpus += 1
            continue
        if device_type != "GPU":
            if not device_type:
                raise HardwareParseError(f"rocminfo agent {agent['#']} has no Device Type (truncated?)", where=where)
            continue
        name = agent.get("Name", "").strip()
        if not re.fullmatch(r"gfx[0-9a-z]+(-generic)?", name):
            raise HardwareParseError(
                f"rocminfo GPU agent {agent['#']} has name {name!r}, not a gfx target", where=where
            )
        gpus.append(
            RocmAgent(
                agent=int(agent["#"]),
                name=name,
                marketing_name=_value(agent.get("Marketing Name")),
                uuid=_rocm_uuid(agent.get("Uuid")),
                isa=agent.get("isa"),
                compute_units=_int_prefix(agent.get("Compute Unit")),
                apu="APU" in agent.get("Memory Properties", "").upper(),
            )
        )
    return RocmInfo(gpus=tuple(gpus), cpu_agents=cpus, runtime_version=runtime.group(1) if runtime else None)


# ----------------------------------------------------------------------------------------------------- vulkaninfo

_VK_DEVICE = re.compile(r"^GPU(\d+):\s*$")
_VK_FIELD = re.compile(r"^\s+(\w+)\s*=\s*(.*?)\s*$")
_VK_DOTTED = re.compile(r"(\d+\.\d+\.\d+)")


def _vulkan_api_version(raw: str, where: str) -> str:
    """Return the dotted API version from ``1.3.255``, ``4206847 (1.3.255)`` or a bare raw number."""
    dotted = _VK_DOTTED.search(raw)
    if dotted:
        return dotted.group(1)
    if raw.isdigit():
        number = int(raw)
        return f"{(number >> 22) & 0x7F}.{(number >> 12) & 0x3FF}.{number & 0xFFF}"
    raise HardwareParseError(f"vulkaninfo apiVersion {raw!r} is neither dotted nor a number", where=where)


def parse_vulkaninfo_summary(text: str, *, where: str = "vulkaninfo --summary") -> VulkanInfo:
    """Parse ``vulkaninfo --summary`` into every device it lists (CPU devices included, see ``is_gpu``).

    Raises :class:`HardwareParseError` when no device is listed or a device lacks apiVersion, deviceType or
    deviceName (a truncated listing).
    """
    clean = _strip_ansi(text).replace("\r\n", "\n")
    instance = re.search(r"Vulkan Instance Version:\s*(\S+)", clean)
    lines = clean.split("\n")
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Devices:")
    except StopIteration:
        raise HardwareParseError(
            f"vulkaninfo output has no 'Devices:' section (first line: {_first_line(text)!r})", where=where
        ) from None
    raw: list[dict[str, str]] = []
    for line in lines[start + 1 :]:
        device = _VK_DEVICE.match(line)
        if device:
            raw.append({"#": device.group(1)})
            continue
        field = _VK_FIELD.match(line)
        if field and raw:
            raw[-1].setdefault(field.group(1), field.group(2))
    if not raw:
        raise HardwareParseError("vulkaninfo lists no devices", where=where)
    devices = []
    for entry in raw:
        missing = [key for key in ("apiVersion", "deviceType", "deviceName") if key not in entry]
        if missing:
            raise HardwareParseError(f"vulkaninfo GPU{entry['#']} lacks {', '.join(missing)} (truncated?)", where=where)
        devices.append(
            VulkanDevice(
                index=int(entry["#"]),
                name=entry["deviceName"],
                device_type=entry["deviceType"],
                api_version=_vulkan_api_version(entry["apiVersion"], where),
                driver_name=entry.get("driverName"),
                vendor_id=entry.get("vendorID"),
            )
        )
    return VulkanInfo(instance_version=instance.group(1) if instance else None, devices=tuple(devices))


# --------------------------------------------------------------------------------------------------------- CPU

_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv8l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def normalize_arch(machine: str) -> str:
    """Map ``uname -m`` (x86_64, aarch64, ...) to the Go/OCI architecture name (amd64, arm64, ...)."""
    word = machine.strip().lower()
    return _ARCH.get(word, word)


def parse_cpu_flags(text: str, *, where: str = CPUINFO_PATH) -> tuple[str, ...]:
    """Return the CPU flags every processor in ``/proc/cpuinfo`` lists, sorted.

    Reads the ``flags`` line (x86; never ``vmx flags``) or the ``Features`` line (arm64). Raises
    :class:`HardwareParseError` when neither is present.
    """
    per_cpu: list[set[str]] = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in {"flags", "features"}:
            per_cpu.append(set(value.lower().split()))
    if not per_cpu:
        raise HardwareParseError("no 'flags' or 'Features' line in cpuinfo", where=where)
    common = set.intersection(*per_cpu)
    if not common:
        raise HardwareParseError("cpuinfo lists no flag that every processor has", where=where)
    return tuple(sorted(common))


# ------------------------------------------------------------------------------------------------------ assembly


def _tool_failure(probe: str, out: ToolOutput) -> ProbeError | None:
    if out.rc == 0 and out.error is None:
        return None
    command = CPUINFO_PATH if probe == "cpuinfo" else " ".join(PROBE_COMMANDS[probe])
    message = out.error or _first_line(f"{out.stderr}\n{out.stdout}") or f"exited {out.rc} with no output"
    return ProbeError(probe=probe, command=command, exit_code=out.rc, message=message)


def hardware_from_probe(probe: HardwareProbe | Mapping[str, object]) -> HostHardware:
    """Turn one host's raw probe outputs into :class:`HostHardware`.

    Never raises for a tool's failure or garbage output: those are recorded in ``probe_errors``. Raises
    :class:`HardwareParseError` only when ``probe`` itself is not a valid probe document.
    """
    if not isinstance(probe, HardwareProbe):
        try:
            probe = HardwareProbe.model_validate(probe)
        except ValidationError as e:
            raise HardwareParseError(f"hardware probe result is malformed: {e}", where="gapseal_hardware") from e
    errors: list[ProbeError] = []
    absent: list[str] = []

    def parsed(name: str, out: ToolOutput, parse: Callable[[str], object]) -> object | None:
        if not out.present:
            absent.append(PROBE_COMMANDS[name][0] if name in PROBE_COMMANDS else CPUINFO_PATH)
            return None
        failure = _tool_failure(name, out)
        if failure:
            errors.append(failure)
            return None
        try:
            return parse(out.stdout)
        except HardwareParseError as e:
            command = CPUINFO_PATH if name == "cpuinfo" else " ".join(PROBE_COMMANDS[name])
            errors.append(ProbeError(probe=name, command=command, exit_code=out.rc, message=e.message))
            return None

    nvidia = parsed("nvidia_smi_xml", probe.nvidia_smi_xml, parse_nvidia_smi_xml)
    if isinstance(nvidia, NvidiaInfo):
        nvidia = _with_compute_caps(nvidia, probe.nvidia_smi_query, errors)
    rocm = parsed("rocminfo", probe.rocminfo, parse_rocminfo)
    vulkan = parsed("vulkaninfo", probe.vulkaninfo, parse_vulkaninfo_summary)
    flags = parsed("cpuinfo", probe.cpuinfo, parse_cpu_flags)
    machine = parsed("uname_m", probe.uname_m, lambda text: _value(text))
    if probe.uname_m.present and probe.uname_m.rc == 0 and not machine:
        errors.append(ProbeError(probe="uname_m", command="uname -m", exit_code=0, message="uname -m printed nothing"))
    # The C library and the loader cache decide whether a build's binaries can start (gapseal.bundler.elf); they are
    # not GPU tools, so their absence is no "tools_absent" entry: it leaves them unknown, and a variant with ELF
    # files is then unmet with that reason (fail closed).
    glibc = probe.glibc.stdout.strip() if probe.glibc.present and probe.glibc.rc == 0 else ""
    loader = parse_ldconfig(probe.ldconfig.stdout) if probe.ldconfig.present and probe.ldconfig.rc == 0 else {}
    return HostHardware(
        glibc=glibc.split()[-1] if glibc else None,
        loader_libraries={name: tuple(sorted(flags)) for name, flags in sorted(loader.items())},
        arch=normalize_arch(machine) if isinstance(machine, str) else "unknown",
        machine=machine if isinstance(machine, str) else None,
        cpu_flags=flags if isinstance(flags, tuple) else (),
        nvidia=nvidia if isinstance(nvidia, NvidiaInfo) else None,
        rocm=rocm if isinstance(rocm, RocmInfo) else None,
        vulkan=vulkan if isinstance(vulkan, VulkanInfo) else None,
        tools_absent=tuple(dict.fromkeys(absent)),
        probe_errors=tuple(errors),
    )


# ------------------------------------------------------------------------------------------------- local probing

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _default_run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed argument lists from PROBE_COMMANDS, no shell
        list(argv), capture_output=True, text=True, errors="replace", timeout=PROBE_TIMEOUT_SECONDS, check=False
    )


def probe_local(
    *,
    run: Runner = _default_run,
    which: Callable[[str], str | None] = shutil.which,
    cpuinfo_path: Path = Path(CPUINFO_PATH),
) -> HardwareProbe:
    """Run every probe on this machine (tools found on PATH) and return the raw outputs."""
    results: dict[str, ToolOutput] = {}
    for name, argv in PROBE_COMMANDS.items():
        path = which(argv[0])
        if path is None:
            results[name] = ToolOutput(present=False)
            continue
        try:
            done = run([path, *argv[1:]])
        except subprocess.TimeoutExpired:
            results[name] = ToolOutput(present=True, error=f"timed out after {PROBE_TIMEOUT_SECONDS}s")
            continue
        except OSError as e:
            results[name] = ToolOutput(present=True, error=f"could not run: {e}")
            continue
        results[name] = ToolOutput(present=True, rc=done.returncode, stdout=done.stdout or "", stderr=done.stderr or "")
    try:
        results["cpuinfo"] = ToolOutput(present=True, rc=0, stdout=cpuinfo_path.read_text(errors="replace"))
    except FileNotFoundError:
        results["cpuinfo"] = ToolOutput(present=False)
    except OSError as e:
        results["cpuinfo"] = ToolOutput(present=True, error=f"could not read: {e}")
    return HardwareProbe.model_validate(results)


def detect_local_hardware(
    *,
    run: Runner = _default_run,
    which: Callable[[str], str | None] = shutil.which,
    cpuinfo_path: Path = Path(CPUINFO_PATH),
) -> HostHardware:
    """Probe this machine with the real tools on PATH and return its :class:`HostHardware`."""
    return hardware_from_probe(probe_local(run=run, which=which, cpuinfo_path=cpuinfo_path))
