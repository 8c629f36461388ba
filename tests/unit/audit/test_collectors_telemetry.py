"""Telemetry recognised by what runs: container images in podman units and Quadlet files, the container's own
environment, stack-specific environment variables, Python scripts importing Hugging Face libraries, and Python
processes with the Hugging Face native libraries mapped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gapseal.audit.collectors._common import RawStore
from gapseal.audit.collectors._units import load_units
from gapseal.audit.collectors.processes import collect_processes, own_netns
from gapseal.audit.collectors.telemetry import (
    collect_telemetry,
    imports_hugging_face,
    recognise_how,
    recognise_image,
)
from gapseal.audit.facts import ProcessesFacts

NO_PROCESSES = ProcessesFacts(status="ok", netns="net:[1]")


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def services(root: Path) -> dict[str, tuple[str, str | None, str | None, bool, list[str]]]:
    f = collect_telemetry(RawStore(), NO_PROCESSES, load_units(root), root)
    return {
        f"{s.service}@{Path(s.location).name}": (
            s.origin,
            s.image,
            s.recognised_by,
            s.telemetry_disabled,
            sorted(r.purpose for r in s.requirements if not r.satisfied),
        )
        for s in f.services
    }


@pytest.mark.parametrize(
    ("image", "service"),
    [
        ("docker.io/vllm/vllm-openai:v0.6.3", "vllm"),
        ("ghcr.io/huggingface/text-generation-inference:2.4.0", "tgi"),
        ("docker.io/ollama/ollama", "ollama"),
        ("ghcr.io/open-webui/open-webui:main", "open-webui"),
        ("ghcr.io/ggml-org/llama.cpp:server-cuda", "llama.cpp"),
        ("registry.enclave:5000/vllm/vllm-openai@sha256:" + "ab" * 32, "vllm"),
        ("localhost/minilm:1.0", None),
        ("docker.io/library/postgres:16", None),
    ],
)
def test_recognise_image(image: str, service: str | None) -> None:
    assert recognise_image(image) == service


def test_podman_run_unit_reads_the_container_environment_not_the_units(tmp_path: Path) -> None:
    write(tmp_path, "etc/default/vllm-container", "VLLM_NO_USAGE_STATS=1\n")
    write(tmp_path, "etc/systemd/system/vllm.service",
          "[Service]\nEnvironment=HF_HUB_OFFLINE=1 DO_NOT_TRACK=1\n"  # the unit's: podman does not pass these on
          "ExecStart=/usr/bin/podman run --rm --name vllm --network none -e HF_HUB_OFFLINE=0 "
          "--env-file /etc/default/vllm-container docker.io/vllm/vllm-openai:v0.6.3 --model /models/m\n")  # fmt: skip
    write(tmp_path, "etc/systemd/system/ollama.service",
          "[Service]\nEnvironment=OLLAMA_NO_CLOUD=1\n"
          "ExecStart=/usr/bin/podman run -e OLLAMA_NO_CLOUD --name o ollama/ollama serve\n")  # fmt: skip
    write(
        tmp_path,
        "etc/systemd/system/llama.service",
        "[Service]\nExecStart=podman run --env-host ghcr.io/ggml-org/llama.cpp:server --offline -m /m.gguf\n",
    )
    assert services(tmp_path) == {
        "llama.cpp@llama.service": ("systemd_unit", "ghcr.io/ggml-org/llama.cpp:server", "image", True, []),
        "ollama@ollama.service": ("systemd_unit", "ollama/ollama", "image", True, []),
        "vllm@vllm.service": ("systemd_unit", "docker.io/vllm/vllm-openai:v0.6.3", "image", False, ["hub offline"]),
    }


def test_quadlet_container_files(tmp_path: Path) -> None:
    write(tmp_path, "etc/containers/systemd/tgi.container",
          "[Unit]\nDescription=TGI\n[Container]\nImage=ghcr.io/huggingface/text-generation-inference:2.4.0\n"
          "Environment=HF_HUB_OFFLINE=1\nExec=--model-id /data/m --usage-stats off\n"
          "[Service]\nEnvironment=USAGE_STATS=off\n")  # fmt: skip
    write(tmp_path, "etc/containers/systemd/apps/webui.container",
          "[Container]\nImage=ghcr.io/open-webui/open-webui:main\nEnvironmentFile=/etc/default/webui\n"
          "PodmanArgs=--env OFFLINE_MODE=true\n")  # fmt: skip
    write(tmp_path, "etc/default/webui", "SCARF_NO_ANALYTICS=true\nDO_NOT_TRACK=true\n")
    write(tmp_path, "etc/containers/systemd/db.container", "[Container]\nImage=docker.io/library/postgres:16\n")
    write(tmp_path, "home/op/.config/containers/systemd/vllm.container", "[Container]\nImage=vllm/vllm-openai\n")
    assert services(tmp_path) == {
        "tgi@tgi.container": ("quadlet", "ghcr.io/huggingface/text-generation-inference:2.4.0", "image", True, []),
        "open-webui@webui.container": (
            "quadlet", "ghcr.io/open-webui/open-webui:main", "image", False, ["chroma telemetry"],
        ),
        "vllm@vllm.container": ("quadlet", "vllm/vllm-openai", "image", False, ["hub offline", "usage statistics"]),
    }  # fmt: skip


def test_unit_recognised_by_its_environment_and_by_python_imports(tmp_path: Path) -> None:
    write(tmp_path, "etc/systemd/system/chat.service",
          "[Service]\nEnvironment=OLLAMA_HOST=127.0.0.1:11434\nExecStart=/opt/chat/bin/server\n")  # fmt: skip
    write(tmp_path, "opt/embed/serve.py", "import os\nfrom sentence_transformers import SentenceTransformer\n")
    write(
        tmp_path,
        "etc/systemd/system/embed.service",
        "[Service]\nEnvironment=HF_HUB_OFFLINE=1\nExecStart=/usr/bin/python3 /opt/embed/serve.py --port 9000\n",
    )
    write(tmp_path, "opt/rag/app", "#!/usr/bin/env python3\nimport transformers\n")
    write(tmp_path, "etc/systemd/system/rag.service", "[Service]\nExecStart=/opt/rag/app\n")
    write(tmp_path, "opt/plain/serve.py", "import http.server\n# transformers is mentioned, not imported\n")
    write(tmp_path, "etc/systemd/system/plain.service", "[Service]\nExecStart=/usr/bin/python3 /opt/plain/serve.py\n")
    assert services(tmp_path) == {
        "ollama@chat.service": ("systemd_unit", None, "environment", False, ["cloud features"]),
        "huggingface@embed.service": ("systemd_unit", None, "python-imports", True, []),
        "huggingface@rag.service": (
            "systemd_unit", None, "python-imports", False, ["hub offline", "hub telemetry", "transformers offline"],
        ),
    }  # fmt: skip


def test_switch_variables_alone_do_not_name_a_stack() -> None:
    assert recognise_how(["/usr/bin/cron", "-f"], {"HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1"}) == {}
    assert recognise_how(["/srv/app"], {"HF_HOME": "/models"}) == {"huggingface": "environment"}
    assert recognise_how(["vllm", "serve"], {"HF_HOME": "/models"}) == {"vllm": "command"}


def test_imports_hugging_face() -> None:
    assert imports_hugging_face("from transformers import AutoModel\n")
    assert imports_hugging_face("  import huggingface_hub as hub\n")
    assert not imports_hugging_face("import transformers_helper\n# import transformers\n")


def test_running_python_with_tokenizers_loaded_is_a_hugging_face_service(tmp_path: Path) -> None:
    """A real Python process that maps a ``tokenizers`` native library (a copy of a real shared object) is found."""
    lib = tmp_path / "site-packages/tokenizers/tokenizers.abi3.so"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(Path(sys.executable).resolve().parent.parent.joinpath("lib").glob("libpython3*.so*").__next__().read_bytes()
                    if list(Path(sys.executable).resolve().parent.parent.joinpath("lib").glob("libpython3*.so*"))
                    else Path("/lib/x86_64-linux-gnu/libz.so.1").read_bytes())  # fmt: skip
    code = f"import ctypes, time; ctypes.CDLL({str(lib)!r}); print('up', flush=True); time.sleep(60)"
    child = subprocess.Popen(["python3", "-c", code], stdout=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"})
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"up"
        facts = collect_processes(RawStore(), Path("/proc"), own_netns(Path("/proc")))
    finally:
        child.kill()
        child.wait()
    (mine,) = [p for p in facts.inference if p.pid == child.pid]
    assert mine.services == ["huggingface"]
    assert mine.recognised_by == {"huggingface": "loaded-library"}


def test_global_engine_options_and_docker_are_understood(tmp_path: Path) -> None:
    write(tmp_path, "etc/systemd/system/a.service",
          "[Service]\nExecStart=/usr/bin/podman --log-level info --root /var/lib/c run --rm --name vllm "
          "docker.io/vllm/vllm-openai:v0.6.3\n")  # fmt: skip
    write(tmp_path, "etc/systemd/system/b.service",
          "[Service]\nExecStart=/usr/bin/docker run -d --env OLLAMA_NO_CLOUD=1 ollama/ollama\n")  # fmt: skip
    assert services(tmp_path) == {
        "vllm@a.service": (
            "systemd_unit", "docker.io/vllm/vllm-openai:v0.6.3", "image", False, ["hub offline", "usage statistics"],
        ),
        "ollama@b.service": ("systemd_unit", "ollama/ollama", "image", True, []),
    }  # fmt: skip
