"""Build-variant selection: the first variant, in the spec's order, whose requirements a host meets.

Every variant is checked in full (no short cut at the first unmet requirement), so a selection says for each variant
and each requirement whether it was met and why. That record is what ``gapseal hosts detect`` shows and what a
:class:`NoVariantError` lists when nothing fits.

Semantics (fail closed: anything unknown is unmet, with the reason):

* ``arch`` must equal the host's architecture (``uname -m`` mapped to amd64/arm64).
* ``backend`` implies a device family: ``cuda`` needs at least one NVIDIA GPU from ``nvidia-smi``, ``rocm`` a ROCm GPU
  agent from ``rocminfo``, ``vulkan`` a Vulkan device that is a GPU (discrete, integrated or virtual; llvmpipe and
  other CPU devices never count), ``cpu`` nothing.
* ``nvidia_driver``: the driver version (``535.104.05``) is in the specifier set (``>=535``).
* ``cpu_flags``: all of them are in the host's flags (a flag every processor lists).
* A variant's ELF files (recorded at create, ``gapseal.bundler.elf``): their machine is the host's (``uname -m``), the
  highest ``GLIBC_x.y`` they need is at most the host's glibc, and every library they need that the build does not
  carry is in the host's loader cache (``ldconfig -p``, with the host's arch flag). An unknown glibc or cache is unmet.
* GPU requirements, several GPUs: ``compute_capability`` is checked per NVIDIA GPU, ``gfx`` (any-of) per ROCm GPU
  agent, ``vulkan_api`` per Vulkan GPU device. A family's requirements are met when *one* device of that family meets
  all of that variant's requirements for the family (so a host with a T4 and an A100 meets ``>=8.0`` through the
  A100). An unknown compute capability (R470 has no ``compute_cap`` field) never meets a requirement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gapseal.bundler.descriptor import BinaryRequirements
from gapseal.bundler.elf import LDCONFIG_TAGS, UNAME_TO_MACHINE, parse_version
from gapseal.bundler.spec import Requirements
from gapseal.errors import InstallError
from gapseal.installer.hardware import HostHardware, NvidiaGpu, RocmAgent, VulkanDevice, hardware_from_probe

__all__ = [
    "SELECTION_KIND",
    "NoVariantError",
    "RequirementCheck",
    "VariantCheck",
    "VariantLike",
    "VariantSelection",
    "choose_build_variants",
    "variants_from_probes",
    "evaluate_variants",
    "select_variant",
    "selection_schema",
]

SELECTION_KIND: Literal["gapseal.VariantSelection"] = "gapseal.VariantSelection"


class VariantLike(Protocol):
    """What selection reads from a variant: the spec's ``VariantSpec`` and the descriptor's ``BuildVariant`` fit."""

    @property
    def backend(self) -> str:
        """The backend: cuda, rocm, vulkan or cpu."""

    @property
    def arch(self) -> str:
        """The architecture: amd64 or arm64."""

    @property
    def requires(self) -> Requirements:
        """The variant's requirements."""


class NoVariantError(InstallError):
    """No build variant's requirements are met by a host; the message lists every variant's unmet requirements."""

    def __init__(self, selection: VariantSelection, *, host: str | None = None) -> None:
        build = f"build {selection.build!r}" if selection.build else "this build"
        lines = [f"no variant of {build} fits {host or 'this host'}:"]
        for variant in selection.variants:
            unmet = "; ".join(f"{c.requirement}: {c.reason}" for c in variant.checks if not c.met)
            lines.append(f"  - {variant.label}: {unmet}")
        super().__init__(
            "\n".join(lines),
            where=host,
            hint="ship a variant this hardware meets (a cpu variant is the usual fallback), or fix the host's drivers",
        )
        self.selection = selection


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


RequirementName = Literal[
    "arch",
    "backend",
    "nvidia_driver",
    "compute_capability",
    "gfx",
    "vulkan_api",
    "cpu_flags",
    "binary_machine",
    "glibc",
    "libraries",
    "binaries_readable",
]


class RequirementCheck(_Model):
    """One requirement of one variant, checked against one host."""

    requirement: RequirementName = Field(description="Which requirement (a Requirements field, or arch/backend).")
    wanted: str = Field(description="What the variant asks for, e.g. '>=8.0' or 'gfx90a, gfx942'.")
    met: bool = Field(description="Whether the host meets it.")
    reason: str = Field(description="Why, naming the host's value (or why it is unknown).")


class VariantCheck(_Model):
    """Every requirement of one variant, checked."""

    index: int = Field(description="Position of the variant in the build's list (the order of preference).")
    backend: str = Field(description="The variant's backend.")
    arch: str = Field(description="The variant's architecture.")
    path: str | None = Field(description="The variant's path in the spec, when known (descriptor variants have none).")
    satisfied: bool = Field(description="True when every check is met.")
    checks: tuple[RequirementCheck, ...] = Field(description="One entry per requirement, arch and backend first.")

    @property
    def label(self) -> str:
        """Return a short name, e.g. 'cuda/amd64 (builds/cuda)'."""
        return f"{self.backend}/{self.arch}" + (f" ({self.path})" if self.path else "")

    @property
    def unmet(self) -> tuple[RequirementCheck, ...]:
        """Return the checks that failed."""
        return tuple(c for c in self.checks if not c.met)


class VariantSelection(_Model):
    """The outcome of selecting a variant of one build for one host."""

    kind: Literal["gapseal.VariantSelection"] = Field(default=SELECTION_KIND, description="Document kind.")
    version: Literal[1] = Field(default=1, description="Schema version.")
    build: str | None = Field(description="The build's name, when given.")
    selected: int | None = Field(description="Index of the chosen variant (the first satisfied); None if none.")
    variants: tuple[VariantCheck, ...] = Field(description="Every variant, checked, in the build's order.")

    @property
    def chosen(self) -> VariantCheck | None:
        """Return the chosen variant's checks, or None."""
        return None if self.selected is None else self.variants[self.selected]


def selection_schema() -> dict[str, Any]:
    """Return the JSON Schema of :class:`VariantSelection` (published as schemas/variant-selection.v1.schema.json)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://gapseal.invalid/schemas/variant-selection.v1.schema.json",
        **VariantSelection.model_json_schema(),
    }


# ------------------------------------------------------------------------------------------------------ checking


def _spec(wanted: str) -> SpecifierSet:
    return SpecifierSet(wanted, prereleases=True)


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _absent_reason(hardware: HostHardware, tool: str, probe: str, what: str) -> str:
    error = hardware.probe_error(probe)
    if error is not None:
        return f"{tool} failed: {error.message}"
    if tool in hardware.tools_absent:
        return f"no {what}: {tool} not found"
    return f"no {what} listed by {tool}"


def _check_arch(wanted: str, hardware: HostHardware) -> RequirementCheck:
    met = wanted == hardware.arch
    reason = f"host is {hardware.arch}" if met else f"{wanted} required, host is {hardware.arch}"
    return RequirementCheck(requirement="arch", wanted=wanted, met=met, reason=reason)


def _check_backend(backend: str, hardware: HostHardware) -> RequirementCheck:
    if backend == "cpu":
        return RequirementCheck(requirement="backend", wanted="cpu", met=True, reason="a CPU build needs no GPU")
    if backend == "cuda":
        gpus = hardware.nvidia.gpus if hardware.nvidia else ()
        if gpus:
            names = ", ".join(g.name for g in gpus)
            return RequirementCheck(requirement="backend", wanted="an NVIDIA GPU", met=True, reason=f"host has {names}")
        reason = _absent_reason(hardware, "nvidia-smi", "nvidia_smi_xml", "NVIDIA GPU")
        return RequirementCheck(requirement="backend", wanted="an NVIDIA GPU", met=False, reason=reason)
    if backend == "rocm":
        agents = hardware.rocm.gpus if hardware.rocm else ()
        if agents:
            reason = f"host has {', '.join(hardware.rocm.gfx_targets)}" if hardware.rocm else ""
            return RequirementCheck(requirement="backend", wanted="a ROCm GPU", met=True, reason=reason)
        reason = _absent_reason(hardware, "rocminfo", "rocminfo", "ROCm GPU agent")
        return RequirementCheck(requirement="backend", wanted="a ROCm GPU", met=False, reason=reason)
    if backend == "vulkan":
        if hardware.vulkan and hardware.vulkan.gpus:
            names = ", ".join(d.name for d in hardware.vulkan.gpus)
            return RequirementCheck(requirement="backend", wanted="a Vulkan GPU", met=True, reason=f"host has {names}")
        if hardware.vulkan and hardware.vulkan.devices:
            cpus = ", ".join(f"{d.name} ({d.device_type})" for d in hardware.vulkan.devices)
            reason = f"no Vulkan GPU: only {cpus}, which do not count as GPUs"
        else:
            reason = _absent_reason(hardware, "vulkaninfo", "vulkaninfo", "Vulkan device")
        return RequirementCheck(requirement="backend", wanted="a Vulkan GPU", met=False, reason=reason)
    return RequirementCheck(
        requirement="backend", wanted=backend, met=False, reason=f"unknown backend {backend!r}; cannot check it"
    )


def _check_driver(wanted: str, hardware: HostHardware) -> RequirementCheck:
    def result(met: bool, reason: str) -> RequirementCheck:
        return RequirementCheck(requirement="nvidia_driver", wanted=wanted, met=met, reason=reason)

    if hardware.nvidia is None:
        return result(False, _absent_reason(hardware, "nvidia-smi", "nvidia_smi_xml", "NVIDIA driver"))
    driver = hardware.nvidia.driver_version
    version = _version(driver)
    if version is None:
        return result(False, f"driver version {driver!r} is not a version number")
    if version in _spec(wanted):
        return result(True, f"driver {driver} satisfies {wanted}")
    return result(False, f"driver {driver} does not satisfy {wanted}")


def _check_cpu_flags(wanted: Sequence[str], hardware: HostHardware) -> RequirementCheck:
    text = ", ".join(wanted)
    if not hardware.cpu_flags:
        error = hardware.probe_error("cpuinfo")
        why = f"CPU flags unknown: {error.message}" if error else "CPU flags unknown: /proc/cpuinfo not read"
        return RequirementCheck(requirement="cpu_flags", wanted=text, met=False, reason=why)
    have = set(hardware.cpu_flags)
    missing = [flag for flag in wanted if flag.lower() not in have]
    if missing:
        reason = f"host CPU lacks {', '.join(missing)}"
        return RequirementCheck(requirement="cpu_flags", wanted=text, met=False, reason=reason)
    return RequirementCheck(requirement="cpu_flags", wanted=text, met=True, reason=f"host CPU has {text}")


def _gpu_family_checks(
    family: str,
    devices: Sequence[Any],
    describe: Callable[[Any], str],
    tests: list[tuple[RequirementName, str, Callable[[Any], tuple[bool, str]]]],
    nothing_reason: str,
) -> list[RequirementCheck]:
    """Check one device family: met when one device passes every test; else report per requirement why not."""
    if not tests:
        return []
    if not devices:
        return [RequirementCheck(requirement=n, wanted=w, met=False, reason=nothing_reason) for n, w, _ in tests]
    for device in devices:
        outcomes = [test(device) for _, _, test in tests]
        if all(ok for ok, _ in outcomes):
            return [
                RequirementCheck(requirement=name, wanted=wanted, met=True, reason=f"{describe(device)}: {why}")
                for (name, wanted, _), (_, why) in zip(tests, outcomes, strict=True)
            ]
    checks = []
    for name, wanted, test in tests:
        results = [(device, *test(device)) for device in devices]
        passing = [d for d, ok, _ in results if ok]
        if passing and len(tests) > 1:
            reason = (
                f"{describe(passing[0])} meets it, but no single {family} meets all of this variant's {family} "
                "requirements"
            )
        elif passing:
            reason = f"{describe(passing[0])}: met"
        else:
            reason = "; ".join(f"{describe(d)}: {why}" for d, _, why in results)
        checks.append(RequirementCheck(requirement=name, wanted=wanted, met=False, reason=reason))
    return checks


def _nvidia_checks(requires: Requirements, hardware: HostHardware) -> list[RequirementCheck]:
    tests: list[tuple[RequirementName, str, Callable[[Any], tuple[bool, str]]]] = []
    if requires.compute_capability is not None:
        wanted = requires.compute_capability

        def capability(gpu: NvidiaGpu) -> tuple[bool, str]:
            if gpu.compute_capability is None:
                return False, f"compute capability unknown: {gpu.compute_capability_unknown_reason}"
            version = _version(gpu.compute_capability)
            if version is not None and version in _spec(wanted):
                return True, f"compute capability {gpu.compute_capability} satisfies {wanted}"
            return False, f"compute capability {gpu.compute_capability} does not satisfy {wanted}"

        tests.append(("compute_capability", wanted, capability))
    gpus = hardware.nvidia.gpus if hardware.nvidia else ()
    nothing = _absent_reason(hardware, "nvidia-smi", "nvidia_smi_xml", "NVIDIA GPU")
    return _gpu_family_checks("NVIDIA GPU", gpus, lambda g: f"GPU {g.index} {g.name}", tests, nothing)


def _rocm_checks(requires: Requirements, hardware: HostHardware) -> list[RequirementCheck]:
    tests: list[tuple[RequirementName, str, Callable[[Any], tuple[bool, str]]]] = []
    if requires.gfx is not None:
        targets = list(requires.gfx)
        wanted = ", ".join(targets)
        host = ", ".join(hardware.rocm.gfx_targets) if hardware.rocm else ""
        need = targets[0] if len(targets) == 1 else f"one of {wanted}"

        def gfx(agent: RocmAgent) -> tuple[bool, str]:
            if agent.name in targets:
                return True, f"{agent.name} is one of {wanted}"
            return False, f"{need} required, host has {host}"

        tests.append(("gfx", wanted, gfx))
    agents = hardware.rocm.gpus if hardware.rocm else ()
    nothing = _absent_reason(hardware, "rocminfo", "rocminfo", "ROCm GPU agent")
    return _gpu_family_checks("ROCm GPU", agents, lambda a: f"agent {a.agent} {a.name}", tests, nothing)


def _vulkan_checks(requires: Requirements, hardware: HostHardware) -> list[RequirementCheck]:
    tests: list[tuple[RequirementName, str, Callable[[Any], tuple[bool, str]]]] = []
    if requires.vulkan_api is not None:
        wanted = requires.vulkan_api

        def api(device: VulkanDevice) -> tuple[bool, str]:
            version = _version(device.api_version)
            if version is not None and version in _spec(wanted):
                return True, f"Vulkan API {device.api_version} satisfies {wanted}"
            return False, f"Vulkan API {device.api_version} does not satisfy {wanted}"

        tests.append(("vulkan_api", wanted, api))
    devices = hardware.vulkan.gpus if hardware.vulkan else ()
    if hardware.vulkan and hardware.vulkan.devices and not devices:
        listed = ", ".join(f"{d.name} ({d.device_type})" for d in hardware.vulkan.devices)
        nothing = f"no Vulkan GPU: only {listed}, which do not count as GPUs"
    else:
        nothing = _absent_reason(hardware, "vulkaninfo", "vulkaninfo", "Vulkan GPU")
    return _gpu_family_checks("Vulkan GPU", devices, lambda d: f"device {d.index} {d.name}", tests, nothing)


def _check_binaries(binaries: BinaryRequirements, hardware: HostHardware) -> list[RequirementCheck]:
    """Can the host's loader start the variant's ELF files? Machine, glibc version, every needed library."""
    checks: list[RequirementCheck] = []
    host_machine = UNAME_TO_MACHINE.get(hardware.machine or "", None)
    wanted = ", ".join(binaries.machines) or "-"
    if host_machine is None:
        reason = f"host machine {hardware.machine or 'unknown'} (uname -m) is not one gapseal knows"
        checks.append(RequirementCheck(requirement="binary_machine", wanted=wanted, met=False, reason=reason))
    else:
        other = [m for m in binaries.machines if m != host_machine]
        reason = (
            f"the build's ELF files are {', '.join(other)}, the host runs {host_machine}"
            if other
            else f"host runs {host_machine}"
        )
        checks.append(RequirementCheck(requirement="binary_machine", wanted=wanted, met=not other, reason=reason))
    if binaries.glibc is not None:
        needed, host = parse_version(binaries.glibc), parse_version(hardware.glibc or "")
        if host is None:
            met, reason = False, "the host's glibc version is unknown (getconf GNU_LIBC_VERSION gave none)"
        elif needed is not None and host >= needed:
            met, reason = True, f"host has glibc {hardware.glibc}"
        else:
            met = False
            reason = f"{binaries.glibc_needed_by} needs GLIBC_{binaries.glibc}, the host has glibc {hardware.glibc}"
        checks.append(RequirementCheck(requirement="glibc", wanted=f">={binaries.glibc}", met=met, reason=reason))
    if binaries.libraries:
        tag = LDCONFIG_TAGS.get(host_machine or "")
        if not hardware.loader_libraries:
            missing = [lib.name for lib in binaries.libraries]
            reason = "the host's loader cache is unknown (ldconfig -p gave nothing)"
        else:
            missing = [
                lib.name
                for lib in binaries.libraries
                if lib.name not in hardware.loader_libraries
                or (tag is not None and tag not in hardware.loader_libraries[lib.name])
            ]
            by = {lib.name: lib.needed_by for lib in binaries.libraries}
            reason = (
                "not in the host's loader cache: " + ", ".join(f"{m} (needed by {by[m]})" for m in missing)
                if missing
                else f"all {len(binaries.libraries)} found in the host's loader cache"
            )
        names = ", ".join(lib.name for lib in binaries.libraries)
        checks.append(RequirementCheck(requirement="libraries", wanted=names, met=not missing, reason=reason))
    if binaries.unreadable:
        listed = "; ".join(f"{path}: {why}" for path, why in binaries.unreadable.items())
        checks.append(
            RequirementCheck(
                requirement="binaries_readable",
                wanted="every ELF file readable",
                met=False,
                reason=f"could not read at create, so cannot be proven to run: {listed}",
            )
        )
    return checks


def _variant_binaries(variant: VariantLike | Mapping[str, Any]) -> BinaryRequirements | None:
    raw = variant.get("binaries") if isinstance(variant, Mapping) else getattr(variant, "binaries", None)
    if raw is None or isinstance(raw, BinaryRequirements):
        return raw
    try:
        return BinaryRequirements.model_validate(raw)
    except ValidationError as e:
        raise InstallError(f"variant binaries record is invalid: {e.errors()[0]['msg']}", where="variants") from e


def _variant_fields(variant: VariantLike | Mapping[str, Any]) -> tuple[str, str, str | None, Requirements]:
    """Read backend, arch, path and requires from a spec/descriptor variant or a plain mapping (Ansible args)."""
    if isinstance(variant, Mapping):
        try:
            requires = Requirements.model_validate(variant.get("requires") or {})
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
            raise InstallError(f"variant requirements are invalid: {problems}", where="variants") from e
        backend, arch, path = variant.get("backend"), variant.get("arch"), variant.get("path")
    else:
        requires = variant.requires
        backend, arch, path = variant.backend, variant.arch, getattr(variant, "path", None)
    if not isinstance(backend, str) or not isinstance(arch, str):
        raise InstallError(f"variant needs string backend and arch, got {backend!r} and {arch!r}", where="variants")
    return backend, arch, (str(path) if path is not None else None), requires


def _check_variant(index: int, variant: VariantLike | Mapping[str, Any], hardware: HostHardware) -> VariantCheck:
    backend, arch, path, requires = _variant_fields(variant)
    checks = [_check_arch(arch, hardware), _check_backend(backend, hardware)]
    if requires.nvidia_driver is not None:
        checks.append(_check_driver(requires.nvidia_driver, hardware))
    try:
        checks += _nvidia_checks(requires, hardware)
        checks += _rocm_checks(requires, hardware)
        checks += _vulkan_checks(requires, hardware)
    except InvalidSpecifier as e:  # the spec validates these; a hand-written mapping might not
        raise InstallError(f"variant {index} has an invalid version constraint: {e}", where="variants") from e
    if requires.cpu_flags is not None:
        checks.append(_check_cpu_flags(requires.cpu_flags, hardware))
    binaries = _variant_binaries(variant)
    if binaries is not None:
        checks += _check_binaries(binaries, hardware)
    return VariantCheck(
        index=index,
        backend=backend,
        arch=arch,
        path=path,
        satisfied=all(c.met for c in checks),
        checks=tuple(checks),
    )


def evaluate_variants(
    variants: Sequence[VariantLike | Mapping[str, Any]], hardware: HostHardware, *, build: str | None = None
) -> VariantSelection:
    """Check every variant against ``hardware``; ``selected`` is the first satisfied one, or None.

    Never raises for a host that meets nothing (see :func:`select_variant`).
    """
    if not variants:
        raise InstallError(f"build {build or '?'} has no variants", where="variants")
    checked = tuple(_check_variant(i, v, hardware) for i, v in enumerate(variants))
    selected = next((c.index for c in checked if c.satisfied), None)
    return VariantSelection(build=build, selected=selected, variants=checked)


def select_variant(
    variants: Sequence[VariantLike | Mapping[str, Any]],
    hardware: HostHardware,
    *,
    build: str | None = None,
    host: str | None = None,
) -> VariantSelection:
    """Return the selection whose ``chosen`` is the first variant (spec order) the host satisfies.

    Raises :class:`NoVariantError` (an ``InstallError``) listing every variant's unmet requirements when none fits.
    """
    selection = evaluate_variants(variants, hardware, build=build)
    if selection.selected is None:
        raise NoVariantError(selection, host=host)
    return selection


def variants_from_probes(
    builds: Sequence[Mapping[str, Any]], probes: Mapping[str, Any], *, host: str | None = None
) -> tuple[HostHardware, dict[str, Any], list[str]]:
    """Parse a host's raw probe outputs and choose every build's variant: ``(hardware, selections, unmet)``.

    What the ``gapseal_hardware`` and ``gapseal_host_state`` action plugins do with the module's ``probes``; raises
    ``InstallError`` (``HardwareParseError``) for output that cannot be parsed.
    """
    hardware = hardware_from_probe(probes)
    selections, unmet = choose_build_variants(builds, hardware, host=host)
    return hardware, selections, unmet


def choose_build_variants(
    builds: Sequence[Mapping[str, Any]], hardware: HostHardware, *, host: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Evaluate every build's variants for one host, as the install's ``gapseal_variants`` fact.

    Returns ``({build name: VariantSelection as JSON + "chosen": {index, backend, arch, path} or None}, unmet)``
    where ``unmet`` holds one :class:`NoVariantError` message per build that has no variant the host satisfies.
    The action plugins reach it through ``variants_from_probes`` (one home for the fact's shape).
    """
    selections: dict[str, Any] = {}
    unmet: list[str] = []
    for build in builds:
        name = build.get("name")
        if not isinstance(name, str) or not name:
            raise InstallError(f"every build needs a name, got {build!r}", where="builds")
        selection = evaluate_variants(build.get("variants") or [], hardware, build=name)
        chosen = selection.chosen
        entry = selection.model_dump(mode="json")
        entry["chosen"] = (
            {"index": chosen.index, "backend": chosen.backend, "arch": chosen.arch, "path": chosen.path}
            if chosen is not None
            else None
        )
        selections[name] = entry
        if chosen is None:
            unmet.append(NoVariantError(selection, host=host).message)
    return selections, unmet
