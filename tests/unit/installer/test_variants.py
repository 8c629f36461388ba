"""Variant selection over hosts built from recorded real tool outputs (there is no GPU on this machine).

Each host is what the gapseal_hardware module would report with the fake tools of a ``fakebin`` profile on its PATH:
the recorded outputs listed in tests/fixtures/hardware/README.md, parsed by gapseal.installer.hardware.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gapseal.bundler.descriptor import BuildVariant
from gapseal.bundler.spec import Requirements, VariantSpec, parse_spec
from gapseal.errors import InstallError
from gapseal.installer.hardware import HostHardware, NvidiaGpu, NvidiaInfo, hardware_from_probe
from gapseal.installer.variants import (
    NoVariantError,
    RequirementCheck,
    VariantSelection,
    evaluate_variants,
    select_variant,
)
from tests.fixtures.hardware.fakebin import recorded_probe

# The example spec of the installer and bundle issues, verbatim.
ISSUE_SPEC = """\
apiVersion: gapseal/v1
kind: Bundle
metadata: {name: clinic-assistant, version: 1.4.0}
builds:
  - name: llama-server
    variants:
      - {backend: cuda, arch: amd64, path: builds/cuda, requires: {nvidia_driver: ">=535", compute_capability: ">=8.0"}}
      - {backend: rocm, arch: amd64, path: builds/rocm, requires: {gfx: [gfx90a, gfx942]}}
      - {backend: vulkan, arch: amd64, path: builds/vulkan, requires: {vulkan_api: ">=1.3"}}
      - {backend: cpu, arch: amd64, path: builds/cpu, requires: {cpu_flags: [avx2]}}
"""


@pytest.fixture(scope="module")
def variants() -> list[VariantSpec]:
    spec, _ = parse_spec(ISSUE_SPEC, Path("/nonexistent/spec.yaml"))
    return list(spec.builds[0].variants)


def host(profile: str, **kw: str) -> HostHardware:
    return hardware_from_probe(recorded_probe(profile, **kw))


def check(selection: VariantSelection, index: int, requirement: str) -> RequirementCheck:
    return next(c for c in selection.variants[index].checks if c.requirement == requirement)


@pytest.mark.parametrize(
    ("profile", "backend"),
    [
        ("nvidia-r535-a100-mig", "cuda"),
        ("nvidia-r590-dual-a5000", "cuda"),
        ("amd-mi300x", "rocm"),
        ("amd-mi250-x4", "rocm"),
        ("vulkan-renoir-1650ti", "vulkan"),
        ("none", "cpu"),
        ("llvmpipe-only", "cpu"),
    ],
)
def test_recorded_hosts_get_the_issue_spec_variant(variants: list[VariantSpec], profile: str, backend: str) -> None:
    selection = select_variant(variants, host(profile), build="llama-server")
    assert selection.chosen is not None
    assert selection.chosen.backend == backend
    assert selection.chosen.satisfied
    assert all(c.met for c in selection.chosen.checks)


def test_nvidia_host_reasons_name_driver_and_gpu(variants: list[VariantSpec]) -> None:
    selection = select_variant(variants, host("nvidia-r535-a100-mig"))
    assert check(selection, 0, "nvidia_driver").reason == "driver 535.54.03 satisfies >=535"
    assert check(selection, 0, "compute_capability").reason == (
        "GPU 0 NVIDIA A100-SXM4-80GB: compute capability 8.0 satisfies >=8.0"
    )
    # the later variants were still checked, with their own reasons
    assert check(selection, 1, "gfx").reason == "no ROCm GPU agent: rocminfo not found"
    assert check(selection, 3, "cpu_flags").met


def test_first_satisfied_variant_wins_over_later_ones(variants: list[VariantSpec]) -> None:
    selection = select_variant(variants, host("nvidia-r535-a100-mig"))
    assert selection.selected == 0
    assert selection.variants[3].satisfied  # the cpu variant also fits, but comes later


def test_r470_host_compute_capability_unknown_is_unmet(variants: list[VariantSpec]) -> None:
    """R470 (real compute_cap failure, DTD-v11 document with driver 470.182.03, see fakebin.r470_xml)."""
    hardware = host("nvidia-r470")
    selection = select_variant(variants, hardware)
    assert selection.chosen is not None
    assert selection.chosen.backend == "cpu"
    assert check(selection, 0, "nvidia_driver").reason == "driver 470.182.03 does not satisfy >=535"
    cc = check(selection, 0, "compute_capability")
    assert not cc.met
    assert (
        cc.reason == "GPU 0 NVIDIA A100-SXM4-40GB: compute capability unknown: nvidia-smi R470 has no compute_cap field"
    )


def test_r470_unknown_capability_fails_even_a_low_requirement() -> None:
    only_cc = [VariantSpec(backend="cuda", arch="amd64", path="b", requires=Requirements(compute_capability=">=3.0"))]
    selection = evaluate_variants(only_cc, host("nvidia-r470"))
    assert selection.selected is None
    assert (
        "compute capability unknown: nvidia-smi R470 has no compute_cap field"
        in check(selection, 0, "compute_capability").reason
    )


def test_gfx_any_of_unmet_names_host_target(variants: list[VariantSpec]) -> None:
    selection = select_variant(variants, host("amd-apu-gfx1151"))
    assert selection.chosen is not None
    assert selection.chosen.backend == "cpu"
    assert check(selection, 1, "gfx").reason == "agent 2 gfx1151: one of gfx90a, gfx942 required, host has gfx1151"


def test_single_gfx_target_reason() -> None:
    one = [VariantSpec(backend="rocm", arch="amd64", path="b", requires=Requirements(gfx=["gfx942"]))]
    selection = evaluate_variants(one, host("amd-apu-gfx1151"))
    assert check(selection, 0, "gfx").reason == "agent 2 gfx1151: gfx942 required, host has gfx1151"
    ok = evaluate_variants(one, host("amd-mi300x"))
    assert ok.selected == 0
    assert check(ok, 0, "gfx").reason == "agent 2 gfx942: gfx942 is one of gfx942"


def test_llvmpipe_only_host_does_not_get_vulkan(variants: list[VariantSpec]) -> None:
    selection = select_variant(variants, host("llvmpipe-only"))
    assert not selection.variants[2].satisfied
    reason = check(selection, 2, "vulkan_api").reason
    assert reason == (
        "no Vulkan GPU: only llvmpipe (LLVM 15.0.7, 256 bits) (PHYSICAL_DEVICE_TYPE_CPU), which do not count as GPUs"
    )
    assert check(selection, 2, "backend").reason == reason


def test_vulkan_version_too_low_names_every_gpu() -> None:
    want_14 = [VariantSpec(backend="vulkan", arch="amd64", path="b", requires=Requirements(vulkan_api=">=1.4"))]
    selection = evaluate_variants(want_14, host("vulkan-renoir-1650ti"))
    assert selection.selected is None
    assert check(selection, 0, "vulkan_api").reason == (
        "device 0 AMD Radeon Graphics (RADV RENOIR): Vulkan API 1.3.246 does not satisfy >=1.4; "
        "device 1 NVIDIA GeForce GTX 1650 Ti: Vulkan API 1.3.242 does not satisfy >=1.4"
    )


def test_host_meeting_no_variant_fails_with_every_reason(variants: list[VariantSpec]) -> None:
    """An old Intel i5 750 (no avx2) without GPU tools: nothing fits, and the error says why for each variant."""
    hardware = host("none", cpuinfo="cpuinfo/x86-intel-i5-750-no-avx-vmx-flags.txt")
    with pytest.raises(NoVariantError) as info:
        select_variant(variants, hardware, build="llama-server", host="host3")
    err = info.value
    assert isinstance(err, InstallError)
    assert err.where == "host3"
    assert err.message == (
        "no variant of build 'llama-server' fits host3:\n"
        "  - cuda/amd64 (builds/cuda): backend: no NVIDIA GPU: nvidia-smi not found; "
        "nvidia_driver: no NVIDIA driver: nvidia-smi not found; "
        "compute_capability: no NVIDIA GPU: nvidia-smi not found\n"
        "  - rocm/amd64 (builds/rocm): backend: no ROCm GPU agent: rocminfo not found; "
        "gfx: no ROCm GPU agent: rocminfo not found\n"
        "  - vulkan/amd64 (builds/vulkan): backend: no Vulkan device: vulkaninfo not found; "
        "vulkan_api: no Vulkan GPU: vulkaninfo not found\n"
        "  - cpu/amd64 (builds/cpu): cpu_flags: host CPU lacks avx2"
    )
    assert err.selection.selected is None
    assert [v.satisfied for v in err.selection.variants] == [False, False, False, False]


def test_arm64_host_rejects_amd64_variants(variants: list[VariantSpec]) -> None:
    hardware = host("none", cpuinfo="cpuinfo/arm64-2cpu-vm.txt", machine="aarch64")
    assert hardware.arch == "arm64"
    selection = evaluate_variants(variants, hardware)
    assert selection.selected is None
    assert check(selection, 3, "arch").reason == "amd64 required, host is arm64"
    arm = [VariantSpec(backend="cpu", arch="arm64", path="b", requires=Requirements(cpu_flags=["asimd", "atomics"]))]
    assert select_variant(arm, hardware).selected == 0


def test_failed_tool_reason_is_the_tools_error(variants: list[VariantSpec]) -> None:
    probe = recorded_probe("none")
    probe["nvidia_smi_xml"] = {
        "present": True,
        "rc": 9,
        "stdout": "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running.\n",
        "stderr": "",
        "error": None,
    }
    selection = evaluate_variants(variants, hardware_from_probe(probe))
    assert check(selection, 0, "nvidia_driver").reason.startswith(
        "nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    )


def test_several_gpus_one_meeting_the_requirement_is_enough() -> None:
    """Model-level host: the compute capabilities of the real two-GPU query (TITAN V 7.0, RTX 5880 Ada 8.9)."""
    gpus = tuple(
        NvidiaGpu(
            index=i,
            name=name,
            uuid=None,
            pci_bus_id=None,
            architecture=None,
            memory_total_mib=None,
            mig_mode=None,
            mig_devices=0,
            compute_capability=cc,
            compute_capability_unknown_reason=None,
        )
        for i, (name, cc) in enumerate([("NVIDIA TITAN V", "7.0"), ("NVIDIA RTX 5880 Ada Generation", "8.9")])
    )
    nvidia = NvidiaInfo(
        driver_version="570.86.15", driver_branch=570, cuda_version=None, dtd_version=None, attached_gpus=2, gpus=gpus
    )
    hardware = HostHardware(
        arch="amd64",
        machine="x86_64",
        cpu_flags=(),
        nvidia=nvidia,
        rocm=None,
        vulkan=None,
        tools_absent=(),
        probe_errors=(),
    )
    want = [VariantSpec(backend="cuda", arch="amd64", path="b", requires=Requirements(compute_capability=">=8.0"))]
    selection = select_variant(want, hardware)
    assert check(selection, 0, "compute_capability").reason == (
        "GPU 1 NVIDIA RTX 5880 Ada Generation: compute capability 8.9 satisfies >=8.0"
    )
    too_high = [VariantSpec(backend="cuda", arch="amd64", path="b", requires=Requirements(compute_capability=">=9.0"))]
    assert check(evaluate_variants(too_high, hardware), 0, "compute_capability").reason == (
        "GPU 0 NVIDIA TITAN V: compute capability 7.0 does not satisfy >=9.0; "
        "GPU 1 NVIDIA RTX 5880 Ada Generation: compute capability 8.9 does not satisfy >=9.0"
    )


def test_plain_mappings_and_descriptor_variants_are_accepted() -> None:
    hardware = host("amd-mi300x")
    as_mapping = [{"backend": "rocm", "arch": "amd64", "requires": {"gfx": ["gfx942"]}, "files": []}]
    assert select_variant(as_mapping, hardware).chosen is not None
    as_descriptor = [BuildVariant(backend="rocm", arch="amd64", requires=Requirements(gfx=["gfx942"]), files=[])]
    chosen = select_variant(as_descriptor, hardware).chosen
    assert chosen is not None
    assert chosen.path is None


def test_unknown_requirement_in_a_mapping_is_refused() -> None:
    bad = [{"backend": "cuda", "arch": "amd64", "requires": {"nvidia_drivers": ">=535"}}]
    with pytest.raises(
        InstallError, match="variant requirements are invalid: nvidia_drivers: Extra inputs are not permitted"
    ):
        evaluate_variants(bad, host("none"))


def test_empty_variant_list_is_an_error() -> None:
    with pytest.raises(InstallError, match="build llama-server has no variants"):
        evaluate_variants([], host("none"), build="llama-server")


def test_unknown_backend_is_unmet() -> None:
    odd = [{"backend": "metal", "arch": "amd64", "requires": {}}]
    selection = evaluate_variants(odd, host("none"))
    assert check(selection, 0, "backend").reason == "unknown backend 'metal'; cannot check it"


def test_selection_round_trips_as_json(variants: list[VariantSpec]) -> None:
    selection = select_variant(variants, host("vulkan-renoir-1650ti"), build="llama-server")
    again = VariantSelection.model_validate_json(selection.model_dump_json())
    assert again == selection
    assert again.kind == "gapseal.VariantSelection"
    with pytest.raises(ValueError, match="kind"):
        VariantSelection.model_validate({**selection.model_dump(), "kind": "something.else"})
