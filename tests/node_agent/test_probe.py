"""The machine probe: cores, memory, GPUs (NVML, else nvidia-smi, else none) and usage."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psutil
import pytest

from node_agent import (
    NVIDIA_SMI_QUERY,
    Gpu,
    Machine,
    address_towards,
    find_gpus,
    parse_nvidia_smi,
    probe_machine,
    read_usage,
)

# What `nvidia-smi --query-gpu=name,memory.total,uuid --format=csv,noheader,nounits` prints
# on a machine with these GPUs (memory in MiB).
CAPTURED = """\
NVIDIA A10G, 23028, GPU-5c8b5b8e-6d3c-0c5f-5d1f-2e0a5ec0c8a1
NVIDIA H100 80GB HBM3, 81559, GPU-0f3e2d1c-aaaa-bbbb-cccc-0123456789ab
Tesla T4, 15360, GPU-8f2c9a71-1b2c-3d4e-5f60-718293a4b5c6
"""


def test_nvidia_smi_output_parses_into_gpus() -> None:
    assert parse_nvidia_smi(CAPTURED) == [
        Gpu("NVIDIA A10G", 23028 << 20, "GPU-5c8b5b8e-6d3c-0c5f-5d1f-2e0a5ec0c8a1"),
        Gpu("NVIDIA H100 80GB HBM3", 81559 << 20, "GPU-0f3e2d1c-aaaa-bbbb-cccc-0123456789ab"),
        Gpu("Tesla T4", 15360 << 20, "GPU-8f2c9a71-1b2c-3d4e-5f60-718293a4b5c6"),
    ]


def test_nvidia_smi_lines_that_do_not_parse_are_skipped() -> None:
    text = "\nNo devices were found\nNVIDIA L4, [N/A], GPU-1\nNVIDIA L4, 23034, GPU-2\n"
    assert parse_nvidia_smi(text) == [Gpu("NVIDIA L4", 23034 << 20, "GPU-2")]


def test_a_model_name_with_a_comma_keeps_it() -> None:
    assert parse_nvidia_smi("Acme GPU, rev 2, 1024, GPU-x") == [
        Gpu("Acme GPU, rev 2", 1 << 30, "GPU-x")
    ]


def nvidia_smi_on_path(script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put an ``nvidia-smi`` shell ``script`` first on PATH."""
    binary = tmp_path / "nvidia-smi"
    binary.write_text("#!/bin/sh\n" + script)
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture
def fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An `nvidia-smi` that stands in for the GPU this machine does not have: it answers
    the probe's exact query with the captured output, and fails otherwise."""
    query = " ".join(NVIDIA_SMI_QUERY)
    answer = f"cat <<'EOF'\n{CAPTURED}EOF"
    script = f'if [ "$*" = "{query}" ]; then {answer}\nelse echo "bad query: $*" >&2; exit 2; fi\n'
    nvidia_smi_on_path(script, tmp_path, monkeypatch)


@pytest.mark.usefixtures("fake_nvidia_smi")
def test_gpus_come_from_nvidia_smi_on_path() -> None:
    gpus = find_gpus()
    assert [gpu.model for gpu in gpus] == ["NVIDIA A10G", "NVIDIA H100 80GB HBM3", "Tesla T4"]
    machine = probe_machine()
    assert len(machine.gpus) == 3 and machine.accelerator == "nvidia-a10g"


def test_a_failing_nvidia_smi_means_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failure = "NVIDIA-SMI has failed because it could not communicate with the driver"
    nvidia_smi_on_path(f"echo '{failure}' >&2\nexit 9\n", tmp_path, monkeypatch)
    assert find_gpus() == []


def test_without_nvidia_smi_or_nvml_there_is_no_gpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    machine = probe_machine()
    assert machine.gpus == () and machine.accelerator == ""


def test_cores_and_memory_are_the_machines() -> None:
    machine = probe_machine()
    assert machine.cpu_cores == psutil.cpu_count(logical=True)
    assert machine.memory_bytes == psutil.virtual_memory().total


def test_usage_is_real_and_in_range() -> None:
    read_usage()  # CPU utilisation is measured between two calls
    usage = read_usage()
    assert 0.0 <= usage.cpu_utilization <= 1.0
    assert 0 < usage.memory_used_bytes <= psutil.virtual_memory().total
    assert usage.gpu_utilization == 0.0


def test_accelerator_slug_of_a_gpu_model() -> None:
    assert (
        Machine(1, 1, (Gpu("NVIDIA A100-SXM4-80GB", 1, "u"),)).accelerator
        == "nvidia-a100-sxm4-80gb"
    )


def test_address_towards_a_loopback_server_is_loopback() -> None:
    assert address_towards("127.0.0.1:7100") == "127.0.0.1"
    assert address_towards("[::1]:7100") == "::1"
