"""Hardware parsers over recorded REAL tool outputs, the probe assembly, local detection and the Ansible module.

There is no GPU on this machine: every nvidia-smi / rocminfo / vulkaninfo output here is a recorded real output
(tests/fixtures/hardware/README.md names each source). Where a test changes one in memory, its docstring says how.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gapseal.errors import InstallError
from gapseal.installer.hardware import (
    PROBE_COMMANDS,
    HardwareParseError,
    HardwareProbe,
    HostHardware,
    detect_local_hardware,
    hardware_from_probe,
    normalize_arch,
    parse_cpu_flags,
    parse_nvidia_compute_caps,
    parse_nvidia_smi_xml,
    parse_rocminfo,
    parse_vulkaninfo_summary,
    probe_local,
)
from tests.fixtures.hardware.fakebin import FIXTURES, install_fake_tools, recorded_probe

REPO = Path(__file__).resolve().parents[3]


def fixture(rel: str) -> str:
    return (FIXTURES / rel).read_text()


# ------------------------------------------------------------------------------------------------ nvidia-smi -q -x


@pytest.mark.parametrize(
    ("rel", "driver", "branch", "cuda", "dtd", "attached", "gpus"),
    [
        (
            "nvidia/r510-a100-sxm4-mig.xml",
            "510.47.03",
            510,
            "11.6",
            "v11",
            1,
            [
                (
                    "NVIDIA A100-SXM4-40GB",
                    "GPU-27b94a00-ed54-5c24-b1fd-1054085de32a",
                    "00000000:00:04.0",
                    40960,
                    "Enabled",
                    2,
                )
            ],
        ),
        (
            "nvidia/r535-v12-a100-sxm4-80gb-mig.xml",
            "535.54.03",
            535,
            "12.2",
            "v12",
            4,
            [
                (
                    "NVIDIA A100-SXM4-80GB",
                    "GPU-513536b6-7d19-9063-b049-1e69664bb298",
                    "00000000:01:00.0",
                    81920,
                    "Enabled",
                    4,
                )
            ],
        ),
        (
            "nvidia/r590-v13-dual-rtx-a5000.xml",
            "590.44.01",
            590,
            "13.1",
            "v13",
            2,
            [
                ("NVIDIA RTX A5000", "GPU-12345678-aaaa-bbbb-cccc-0123456789ab", "00000000:81:00.0", 24564, None, 0),
                ("NVIDIA RTX A5000", "GPU-12345678-aaaa-bbbb-cccc-0123456789cd", "00000000:C1:00.0", 24564, None, 0),
            ],
        ),
    ],
)
def test_nvidia_smi_xml_recorded(
    rel: str, driver: str, branch: int, cuda: str, dtd: str, attached: int, gpus: list[tuple[Any, ...]]
) -> None:
    info = parse_nvidia_smi_xml(fixture(rel))
    assert (info.driver_version, info.driver_branch, info.cuda_version, info.dtd_version) == (driver, branch, cuda, dtd)
    assert info.attached_gpus == attached
    got = [(g.name, g.uuid, g.pci_bus_id, g.memory_total_mib, g.mig_mode, g.mig_devices) for g in info.gpus]
    assert got == gpus
    assert [g.index for g in info.gpus] == list(range(len(gpus)))
    # the XML never carries compute capability, whatever the DTD
    assert all(g.compute_capability is None for g in info.gpus)
    assert all(g.compute_capability_unknown_reason for g in info.gpus)


def test_cuda_version_not_found_is_none() -> None:
    """Recorded R535 document with cuda_version set to 'Not Found' in memory (what nvidia-smi prints without CUDA)."""
    text = fixture("nvidia/r535-v12-a100-sxm4-80gb-mig.xml").replace(
        "<cuda_version>12.2</cuda_version>", "<cuda_version>Not Found</cuda_version>"
    )
    assert parse_nvidia_smi_xml(text).cuda_version is None


def test_architecture_from_product_architecture() -> None:
    assert parse_nvidia_smi_xml(fixture("nvidia/r590-v13-dual-rtx-a5000.xml")).gpus[0].architecture == "Ampere"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t[: len(t) // 2], "nvidia-smi XML does not parse"),
        (lambda t: "", "nvidia-smi XML does not parse"),
        (lambda t: "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", "does not parse"),
        (lambda t: t.replace("nvidia_smi_log", "other_log"), "expected <nvidia_smi_log>, got <other_log>"),
        (lambda t: t.replace("<driver_version>535.54.03</driver_version>", ""), "nvidia-smi XML has no driver_version"),
        (
            lambda t: t.replace(
                "<product_name>NVIDIA A100-SXM4-80GB</product_name>", "<product_name>N/A</product_name>"
            ),
            "GPU 0 has no product_name",
        ),
    ],
    ids=["truncated", "empty", "error-text", "wrong-root", "no-driver", "no-name"],
)
def test_bad_nvidia_xml_is_refused(mutate: Any, message: str) -> None:
    """The recorded R535 document, damaged in memory in the way each id says."""
    with pytest.raises(HardwareParseError, match=message):
        parse_nvidia_smi_xml(mutate(fixture("nvidia/r535-v12-a100-sxm4-80gb-mig.xml")))


def test_entity_expansion_is_refused_before_parsing() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE nvidia_smi_log [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><nvidia_smi_log><driver_version>&b;</driver_version>'
        "</nvidia_smi_log>"
    )
    with pytest.raises(HardwareParseError, match="XML declares entities; refusing to parse it"):
        parse_nvidia_smi_xml(bomb)
    subset = '<?xml version="1.0"?><!DOCTYPE nvidia_smi_log [<!ELEMENT x ANY>]><nvidia_smi_log/>'
    with pytest.raises(HardwareParseError, match="internal DTD subset"):
        parse_nvidia_smi_xml(subset)


# ------------------------------------------------------------------------------------------ compute_cap query


def test_compute_cap_csv_recorded_other_column_order() -> None:
    rows = parse_nvidia_compute_caps(fixture("nvidia/query-r570-titan-v-rtx-5880.csv"))
    assert [(r.name, r.uuid, r.compute_cap) for r in rows] == [
        ("NVIDIA TITAN V", None, "7.0"),
        ("NVIDIA RTX 5880 Ada Generation", None, "8.9"),
    ]


def test_compute_cap_csv_recorded_single_column() -> None:
    rows = parse_nvidia_compute_caps(fixture("nvidia/query-r570-compute-cap-only.csv"))
    assert [(r.name, r.uuid, r.compute_cap) for r in rows] == [(None, None, "8.9")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "compute_cap query printed nothing"),
        ('Field "compute_cap" is not a valid field to query.\n', "has no compute_cap column"),
        ("name, compute_cap\nA100, 8.0, extra\n", "line 2 has 3 fields, header has 2"),
        ("name, compute_cap\nA100, eight\n", "compute_cap 'eight' on line 2 is not major.minor"),
    ],
)
def test_bad_compute_cap_csv(text: str, message: str) -> None:
    with pytest.raises(HardwareParseError, match=message):
        parse_nvidia_compute_caps(text)


def test_compute_cap_na_is_unknown_with_reason() -> None:
    rows = parse_nvidia_compute_caps("name, compute_cap\nNVIDIA A100-SXM4-80GB, [N/A]\n")
    assert rows[0].compute_cap is None


def test_compute_caps_joined_by_uuid() -> None:
    hardware = hardware_from_probe(recorded_probe("nvidia-r590-dual-a5000"))
    assert hardware.nvidia is not None
    assert [(g.uuid, g.compute_capability) for g in hardware.nvidia.gpus] == [
        ("GPU-12345678-aaaa-bbbb-cccc-0123456789ab", "8.6"),
        ("GPU-12345678-aaaa-bbbb-cccc-0123456789cd", "8.6"),
    ]
    assert hardware.probe_errors == ()


def test_r470_compute_cap_unknown_and_recorded() -> None:
    """R470: the real query failure (exit 2) with the DTD-v11 document whose driver_version reads 470.182.03."""
    hardware = hardware_from_probe(recorded_probe("nvidia-r470"))
    assert hardware.nvidia is not None
    assert hardware.nvidia.driver_version == "470.182.03"
    gpu = hardware.nvidia.gpus[0]
    assert gpu.compute_capability is None
    assert gpu.compute_capability_unknown_reason == "nvidia-smi R470 has no compute_cap field"
    error = hardware.probe_error("nvidia_smi_query")
    assert error is not None
    assert (error.exit_code, error.message) == (2, 'Field "compute_cap" is not a valid field to query.')


def test_query_from_another_machine_does_not_lend_its_capabilities() -> None:
    """The real two-GPU query (TITAN V, RTX 5880) paired with the recorded one-GPU A100 document: no match, no guess."""
    probe = recorded_probe("nvidia-r535-a100-mig")
    probe["nvidia_smi_query"] = {
        **probe["nvidia_smi_query"],
        "stdout": fixture("nvidia/query-r570-titan-v-rtx-5880.csv"),
    }
    gpu = hardware_from_probe(probe).nvidia.gpus[0]  # type: ignore[union-attr]
    assert gpu.compute_capability is None
    assert gpu.compute_capability_unknown_reason == "compute_cap query does not list this GPU"


# ---------------------------------------------------------------------------------------------------- rocminfo


def test_rocminfo_mi300x() -> None:
    info = parse_rocminfo(fixture("rocm/mi300x-vf-gfx942.txt"))
    assert info.cpu_agents == 1
    assert info.runtime_version == "1.18"
    assert info.gfx_targets == ("gfx942",)
    (gpu,) = info.gpus
    assert (gpu.agent, gpu.name, gpu.marketing_name, gpu.uuid) == (
        2,
        "gfx942",
        "AMD Instinct MI300X VF",
        "GPU-43529fe3ce00c724",
    )
    assert gpu.isa == "amdgcn-amd-amdhsa--gfx942:sramecc+:xnack-"
    assert (gpu.compute_units, gpu.apu) == (304, False)


def test_rocminfo_apu_and_npu_agent() -> None:
    info = parse_rocminfo(fixture("rocm/strix-halo-apu-gfx1151-with-npu.txt"))
    assert info.cpu_agents == 1
    (gpu,) = info.gpus  # the aie2 agent is Device Type DSP: neither CPU nor GPU
    assert (gpu.name, gpu.marketing_name, gpu.apu, gpu.compute_units) == ("gfx1151", "Radeon 8060S Graphics", True, 40)
    assert gpu.uuid is None  # rocminfo prints the placeholder GPU-XX


def test_rocminfo_mi250_two_gcds_per_card() -> None:
    info = parse_rocminfo(fixture("rocm/mi250-x4-eight-gcds-gfx90a.txt"))
    assert info.cpu_agents == 2
    assert info.runtime_version == "1.14"
    assert info.gfx_targets == ("gfx90a",)
    assert [(a.agent, a.uuid) for a in info.gpus] == [
        (3, "GPU-4007a1a5b32f6606"),
        (4, "GPU-52502d2da1dea260"),
        (5, "GPU-653e18d19b439d5a"),
        (6, "GPU-9b11638d619cbb47"),
        (7, "GPU-5a76590cbb8066eb"),
        (8, "GPU-e8c729e8113c9eb7"),
        (9, "GPU-1e9de07e91e5f097"),
        (10, "GPU-51135bae6866f251"),
    ]
    assert {(a.marketing_name, a.compute_units, a.isa) for a in info.gpus} == {
        ("AMD Instinct MI250X/MI250", 104, "amdgcn-amd-amdhsa--gfx90a:sramecc+:xnack-")
    }


def test_rocminfo_colour_codes_are_stripped() -> None:
    """The recorded MI300X listing with ANSI colour codes added around its first line and the GPU name, in memory."""
    text = fixture("rocm/mi300x-vf-gfx942.txt")
    coloured = "\x1b[37mROCk module version 6.16.13 is loaded\x1b[0m" + text[text.index("\n") :]
    coloured = coloured.replace("gfx942                             ", "\x1b[1;32mgfx942\x1b[0m", 1)
    assert parse_rocminfo(coloured) == parse_rocminfo(text)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t[: t.index("  Device Type:             GPU")], "agent 2 has no Device Type"),
        (lambda t: t[: t.index("HSA Agents")], "no 'HSA Agents' section"),
        (lambda t: t[: t.index("*******") + 30], "rocminfo lists no agents"),
        (lambda t: t.replace("Name:                    gfx942", "Name:                    ???   "), "not a gfx target"),
    ],
    ids=["truncated-in-agent", "no-agents-section", "no-agent", "bad-name"],
)
def test_bad_rocminfo_is_refused(mutate: Any, message: str) -> None:
    """The recorded MI300X listing, cut or damaged in memory as each id says."""
    with pytest.raises(HardwareParseError, match=message):
        parse_rocminfo(mutate(fixture("rocm/mi300x-vf-gfx942.txt")))


# -------------------------------------------------------------------------------------------------- vulkaninfo


def test_vulkaninfo_old_raw_api_version_llvmpipe_first() -> None:
    info = parse_vulkaninfo_summary(fixture("vulkan/llvmpipe-only-1.3.204-raw-apiversion.txt"))
    assert info.instance_version == "1.3.204"
    (dev,) = info.devices
    assert (dev.index, dev.name, dev.device_type, dev.api_version, dev.driver_name, dev.vendor_id) == (
        0,
        "llvmpipe (LLVM 15.0.7, 256 bits)",
        "PHYSICAL_DEVICE_TYPE_CPU",
        "1.3.238",
        "llvmpipe",
        "0x10005",
    )
    assert not dev.is_gpu
    assert info.gpus == ()


def test_vulkaninfo_gpus_and_llvmpipe_last() -> None:
    info = parse_vulkaninfo_summary(fixture("vulkan/renoir-gtx1650ti-llvmpipe-1.3.250.txt"))
    assert [(d.name, d.api_version, d.is_gpu) for d in info.devices] == [
        ("AMD Radeon Graphics (RADV RENOIR)", "1.3.246", True),
        ("NVIDIA GeForce GTX 1650 Ti", "1.3.242", True),
        ("llvmpipe (LLVM 15.0.7, 256 bits)", "1.3.246", False),
    ]
    assert [d.name for d in info.gpus] == ["AMD Radeon Graphics (RADV RENOIR)", "NVIDIA GeForce GTX 1650 Ti"]


def test_vulkaninfo_this_machine() -> None:
    info = parse_vulkaninfo_summary(fixture("vulkan/debian12-lavapipe-this-machine.txt"))
    assert [(d.name, d.api_version, d.is_gpu) for d in info.devices] == [
        ("llvmpipe (LLVM 15.0.6, 256 bits)", "1.3.230", False)
    ]


def test_vulkan_bare_raw_number_is_decoded() -> None:
    """The recorded old-format listing with the dotted part of apiVersion removed in memory: 4206830 is 1.3.238."""
    text = fixture("vulkan/llvmpipe-only-1.3.204-raw-apiversion.txt").replace("4206830 (1.3.238)", "4206830")
    assert parse_vulkaninfo_summary(text).devices[0].api_version == "1.3.238"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t[: t.index("\tdeviceType")], "GPU2 lacks deviceType, deviceName"),
        (lambda t: t[: t.index("Devices:")], "no 'Devices:' section"),
        (lambda t: t[: t.index("GPU0:")], "vulkaninfo lists no devices"),
        (
            lambda t: t.replace("= 1.3.246\n\tdriverVersion      = 23.1.7", "= one.three\n\tdriverVersion = 2"),
            "apiVersion",
        ),
    ],
    ids=["truncated-device", "no-devices-section", "no-device", "bad-api-version"],
)
def test_bad_vulkaninfo_is_refused(mutate: Any, message: str) -> None:
    """The recorded three-device listing, cut or damaged in memory as each id says."""
    text = fixture("vulkan/renoir-gtx1650ti-llvmpipe-1.3.250.txt")
    if "GPU2 lacks" in message:
        text = text[: text.index("GPU2:")] + "GPU2:\n\tapiVersion         = 1.3.246\n"
    else:
        text = mutate(text)
    with pytest.raises(HardwareParseError, match=message):
        parse_vulkaninfo_summary(text)


# ----------------------------------------------------------------------------------------------------- cpuinfo


def test_cpuinfo_avx2_this_machine() -> None:
    flags = parse_cpu_flags(fixture("cpuinfo/x86-amd-epyc-avx2-this-machine.txt"))
    assert "avx2" in flags
    assert flags == tuple(sorted(flags))


def test_cpuinfo_vmx_flags_line_is_not_read() -> None:
    flags = parse_cpu_flags(fixture("cpuinfo/x86-intel-i5-750-no-avx-vmx-flags.txt"))
    assert "vmx" in flags
    assert "sse4_2" in flags
    assert "preemption_timer" not in flags
    assert "ept_x_only" not in flags
    assert "avx" not in flags
    assert "avx2" not in flags
    assert len(flags) == 65


def test_cpuinfo_arm64_features() -> None:
    flags = parse_cpu_flags(fixture("cpuinfo/arm64-2cpu-vm.txt"))
    assert {"asimd", "atomics", "sha3", "sve"} & set(flags) == {"asimd", "atomics", "sha3"}
    assert len(flags) == 32


def test_cpuinfo_flag_must_be_on_every_processor() -> None:
    """The recorded i5 750 listing with 'ssse3' removed from the last processor in memory."""
    text = fixture("cpuinfo/x86-intel-i5-750-no-avx-vmx-flags.txt")
    head, last = text.rsplit("processor\t: 3", 1)
    flags = parse_cpu_flags(head + "processor\t: 3" + last.replace(" ssse3 ", " "))
    assert "ssse3" not in flags
    assert "sse4_1" in flags


def test_cpuinfo_without_flags_is_refused() -> None:
    with pytest.raises(HardwareParseError, match="no 'flags' or 'Features' line in cpuinfo"):
        parse_cpu_flags("processor\t: 0\nvendor_id\t: GenuineIntel\n")
    with pytest.raises(HardwareParseError, match="cpuinfo lists no flag that every processor has"):
        parse_cpu_flags("processor\t: 0\nflags\t\t:\n")


@pytest.mark.parametrize(
    ("machine", "arch"),
    [("x86_64", "amd64"), ("aarch64", "arm64"), ("arm64", "arm64"), ("riscv64", "riscv64"), ("mips\n", "mips")],
)
def test_normalize_arch(machine: str, arch: str) -> None:
    assert normalize_arch(machine) == arch


# ---------------------------------------------------------------------------------------------- probe assembly


def test_no_gpu_host_lists_absent_tools_not_errors() -> None:
    hardware = hardware_from_probe(recorded_probe("none"))
    assert (hardware.nvidia, hardware.rocm, hardware.vulkan) == (None, None, None)
    assert hardware.tools_absent == ("nvidia-smi", "rocminfo", "vulkaninfo")
    assert hardware.probe_errors == ()
    assert (hardware.arch, hardware.machine) == ("amd64", "x86_64")


def test_garbage_xml_is_a_probe_error_not_a_crash() -> None:
    """nvidia-smi exits 0 but prints a truncated document (the recorded R535 one, cut in half in memory)."""
    probe = recorded_probe("nvidia-r535-a100-mig")
    xml = probe["nvidia_smi_xml"]["stdout"]
    assert isinstance(xml, str)
    probe["nvidia_smi_xml"] = {**probe["nvidia_smi_xml"], "stdout": xml[: len(xml) // 2]}
    hardware = hardware_from_probe(probe)
    assert hardware.nvidia is None
    error = hardware.probe_error("nvidia_smi_xml")
    assert error is not None
    assert error.command == "nvidia-smi -q -x"
    assert error.exit_code == 0
    assert error.message.startswith("nvidia-smi XML does not parse (")
    assert "nvidia-smi" not in hardware.tools_absent


def test_failing_tools_are_recorded_with_their_message() -> None:
    probe = recorded_probe("none")
    probe["rocminfo"] = {
        "present": True,
        "rc": 1,
        "stdout": "ROCk module is NOT loaded, possibly no GPU devices\n",
        "stderr": "\x1b[31mhsa api call failure at: rocminfo.cc:1306\x1b[0m\n",
        "error": None,
    }
    probe["vulkaninfo"] = {"present": True, "rc": None, "stdout": "", "stderr": "", "error": "timed out after 60s"}
    hardware = hardware_from_probe(probe)
    assert hardware.rocm is None
    assert hardware.vulkan is None
    rocm = hardware.probe_error("rocminfo")
    assert rocm is not None
    assert (rocm.exit_code, rocm.message) == (1, "hsa api call failure at: rocminfo.cc:1306")
    vulkan = hardware.probe_error("vulkaninfo")
    assert vulkan is not None
    assert (vulkan.exit_code, vulkan.message) == (None, "timed out after 60s")


def test_malformed_probe_document_is_refused() -> None:
    with pytest.raises(HardwareParseError, match="hardware probe result is malformed"):
        hardware_from_probe({"nvidia_smi_xml": {"present": True}})
    assert issubclass(HardwareParseError, InstallError)


def test_host_hardware_is_a_frozen_versioned_document() -> None:
    hardware = hardware_from_probe(recorded_probe("amd-mi300x"))
    again = HostHardware.model_validate_json(hardware.model_dump_json())
    assert again == hardware
    with pytest.raises(ValidationError):
        HostHardware.model_validate({**hardware.model_dump(), "kind": "gapseal.Other"})
    with pytest.raises(ValidationError):
        HostHardware.model_validate({**hardware.model_dump(), "surprise": 1})
    with pytest.raises(ValidationError):
        hardware.arch = "arm64"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------- local probing


def test_detect_local_hardware_on_this_machine() -> None:
    """Runs the real tools found on this machine's PATH (no GPU tools; vulkaninfo with llvmpipe if installed)."""
    hardware = detect_local_hardware()
    assert hardware.arch == normalize_arch(os.uname().machine)
    assert set(hardware.cpu_flags) == set(parse_cpu_flags(Path("/proc/cpuinfo").read_text()))
    if shutil.which("nvidia-smi") is None:
        assert hardware.nvidia is None
        assert "nvidia-smi" in hardware.tools_absent
    if shutil.which("vulkaninfo") is not None:
        assert hardware.vulkan is not None, hardware.probe_errors
        assert hardware.vulkan.devices
        assert hardware.vulkan.gpus == ()


def test_detect_local_hardware_with_fake_tools(tmp_path: Path) -> None:
    """The fake nvidia-smi/rocminfo of two profiles (stand-ins printing recorded real output; no GPU here), run as
    real subprocesses through probe_local."""
    nvidia = install_fake_tools(tmp_path / "nv", "nvidia-r535-a100-mig")
    hardware = detect_local_hardware(which=lambda name: shutil.which(name, path=f"{nvidia}:{os.environ['PATH']}"))
    assert hardware.nvidia is not None
    assert [g.compute_capability for g in hardware.nvidia.gpus] == ["8.0"]
    amd = install_fake_tools(tmp_path / "amd", "amd-mi300x")
    hardware = detect_local_hardware(which=lambda name: shutil.which(name, path=f"{amd}:/usr/bin:/bin"))
    assert hardware.rocm is not None
    assert hardware.rocm.gfx_targets == ("gfx942",)


def test_probe_local_records_timeouts_and_unreadable_cpuinfo(tmp_path: Path) -> None:
    def slow(argv: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(argv, 60)

    probe = probe_local(run=slow, which=lambda name: f"/fake/{name}", cpuinfo_path=tmp_path)
    assert isinstance(probe, HardwareProbe)
    assert probe.rocminfo.error == "timed out after 60s"
    assert probe.cpuinfo.present
    assert probe.cpuinfo.error is not None
    assert "could not read" in probe.cpuinfo.error
    hardware = hardware_from_probe(probe)
    assert {e.probe for e in hardware.probe_errors} == {
        "nvidia_smi_xml",
        "rocminfo",
        "vulkaninfo",
        "cpuinfo",
        "uname_m",
    }
    assert hardware.arch == "unknown"


# --------------------------------------------------------------------------------------------------- Ansible


def _load_module_file() -> Any:
    spec = importlib.util.spec_from_file_location(
        "gapseal_host_state_module", REPO / "playbooks/library/gapseal_host_state.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_module_runs_the_same_commands_as_gapseal() -> None:
    assert _load_module_file().PROBE_COMMANDS == PROBE_COMMANDS


ISSUE_BUILDS = [
    {
        "name": "llama-server",
        "variants": [
            {
                "backend": "cuda",
                "arch": "amd64",
                "path": "builds/cuda",
                "requires": {"nvidia_driver": ">=535", "compute_capability": ">=8.0"},
            },
            {"backend": "rocm", "arch": "amd64", "path": "builds/rocm", "requires": {"gfx": ["gfx90a", "gfx942"]}},
            {"backend": "vulkan", "arch": "amd64", "path": "builds/vulkan", "requires": {"vulkan_api": ">=1.3"}},
            {"backend": "cpu", "arch": "amd64", "path": "builds/cpu", "requires": {"cpu_flags": ["avx2"]}},
        ],
    }
]

PLAY = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Probe hardware and choose variants, failing the host when a build has no variant
      gapseal_hardware:
        builds: "{{ builds }}"
      register: strict
      ignore_errors: true
    - name: Probe again for hosts detect, which wants the facts without failing the host
      gapseal_hardware:
        builds: "{{ builds }}"
        fail_on_no_variant: false
      register: lenient
    - name: Save what the tasks returned and the facts they set
      ansible.builtin.copy:
        content: "{{ {'strict': strict, 'lenient': lenient, 'variants': gapseal_variants,
                     'hardware': gapseal_hardware} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
      check_mode: false
"""


def _run_playbook(tmp_path: Path, fake: Path, builds: Any, *, check: bool = False) -> dict[str, Any]:
    """Run PLAY with real ansible-playbook on localhost (local connection) with ``fake`` first on PATH."""
    ansible = Path(sys.executable).parent / "ansible-playbook"
    (tmp_path / "play.yml").write_text(PLAY)
    out = tmp_path / "out.json"
    (tmp_path / "vars.json").write_text(json.dumps({"builds": builds, "out": str(out)}))
    env = {
        **os.environ,
        "PATH": f"{fake}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "ANSIBLE_LIBRARY": str(REPO / "playbooks/library"),
        "ANSIBLE_ACTION_PLUGINS": str(REPO / "playbooks/action_plugins"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        "ANSIBLE_HOME": str(tmp_path / "home"),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_NOCOLOR": "1",
    }
    argv = [str(ansible), "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}"]
    argv += ["-e", "@vars.json", "play.yml"] + (["--check"] if check else [])
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.mark.integration
def test_ansible_playbook_with_fake_amd_tools_chooses_rocm(tmp_path: Path) -> None:
    """Real ansible-playbook on localhost, in check mode; rocminfo is a stand-in printing recorded real MI300X output
    (there is no GPU here)."""
    fake = install_fake_tools(tmp_path / "fake", "amd-mi300x")
    got = _run_playbook(tmp_path, fake, ISSUE_BUILDS, check=True)
    for run in ("strict", "lenient"):
        assert got[run]["changed"] is False
        assert not got[run].get("failed")
    assert got["variants"]["llama-server"]["chosen"] == {
        "index": 1,
        "backend": "rocm",
        "arch": "amd64",
        "path": "builds/rocm",
    }
    assert got["variants"]["llama-server"]["kind"] == "gapseal.VariantSelection"
    hardware = HostHardware.model_validate(got["hardware"])
    assert hardware.rocm is not None
    assert hardware.rocm.gfx_targets == ("gfx942",)
    assert "nvidia-smi" in hardware.tools_absent


@pytest.mark.integration
def test_ansible_playbook_host_meeting_no_variant_fails_with_reasons(tmp_path: Path) -> None:
    """Real ansible-playbook on localhost; nvidia-smi is a stand-in printing the recorded R470 outputs (no GPU here)."""
    fake = install_fake_tools(tmp_path / "fake", "nvidia-r470")
    cuda_only = [{"name": "llama-server", "variants": [ISSUE_BUILDS[0]["variants"][0]]}]
    got = _run_playbook(tmp_path, fake, cuda_only)
    assert got["strict"]["failed"] is True
    assert got["strict"]["msg"] == (
        "no variant of build 'llama-server' fits localhost:\n"
        "  - cuda/amd64 (builds/cuda): nvidia_driver: driver 470.182.03 does not satisfy >=535; "
        "compute_capability: GPU 0 NVIDIA A100-SXM4-40GB: compute capability unknown: "
        "nvidia-smi R470 has no compute_cap field"
    )
    # the lenient run (hosts detect) returns the facts without failing the host
    assert got["lenient"].get("failed") is not True
    assert got["variants"]["llama-server"]["chosen"] is None
    assert got["hardware"]["nvidia"]["driver_version"] == "470.182.03"
    assert got["hardware"]["probe_errors"][0]["exit_code"] == 2


# ------------------------------------------------------------------------------------------------------ schemas

# The published schemas are held to their models by tests/unit/test_schemas.py (python -m gapseal.schemas).


# ------------------------------------------------------------------------------------------ property: no crash

_RECORDED = [
    "nvidia/r535-v12-a100-sxm4-80gb-mig.xml",
    "rocm/mi300x-vf-gfx942.txt",
    "vulkan/renoir-gtx1650ti-llvmpipe-1.3.250.txt",
    "cpuinfo/arm64-2cpu-vm.txt",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.sampled_from(_RECORDED),
    cut=st.floats(min_value=0, max_value=1),
    junk=st.text(max_size=40),
)
def test_damaged_recorded_output_never_crashes(which: str, cut: float, junk: str) -> None:
    """Any recorded output cut at a random point with random text spliced in: the probe becomes parsed facts or a
    recorded probe error, never an exception."""
    text = fixture(which)
    at = int(len(text) * cut)
    damaged = text[:at] + junk + text[at + len(junk) :]
    probe = recorded_probe("none")
    key = {"nvidia": "nvidia_smi_xml", "rocm": "rocminfo", "vulkan": "vulkaninfo", "cpuinfo": "cpuinfo"}[
        which.split("/")[0]
    ]
    probe[key] = {"present": True, "rc": 0, "stdout": damaged, "stderr": "", "error": None}
    hardware = hardware_from_probe(probe)
    errors = {e.probe for e in hardware.probe_errors}
    parsed = {
        "nvidia_smi_xml": hardware.nvidia,
        "rocminfo": hardware.rocm,
        "vulkaninfo": hardware.vulkan,
        "cpuinfo": hardware.cpu_flags or None,
    }[key]
    assert (parsed is None) == (key in errors)


def test_warning_before_the_xml_is_skipped() -> None:
    """The recorded R535 document with a warning line nvidia-smi can print before it, added in memory."""
    text = "WARNING: infoROM is corrupted at gpu 0000:01:00.0\n" + fixture("nvidia/r535-v12-a100-sxm4-80gb-mig.xml")
    assert parse_nvidia_smi_xml(text).driver_version == "535.54.03"
