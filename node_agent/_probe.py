"""What the machine offers and how busy it is: CPU cores, memory and GPUs, read
locally. GPUs come from NVML when ``pynvml`` imports, else from ``nvidia-smi`` when it is
on PATH, else there are none.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from types import ModuleType

import psutil

from astra._gen.astra.v1 import node_pb2

_log = logging.getLogger(__name__)

#: The ``nvidia-smi`` query whose output :func:`parse_nvidia_smi` reads.
NVIDIA_SMI_QUERY = ("--query-gpu=name,memory.total,uuid", "--format=csv,noheader,nounits")
_MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class Gpu:
    """One GPU: its model, memory in bytes and UUID."""

    model: str
    memory_bytes: int
    uuid: str


@dataclass(frozen=True, slots=True)
class Machine:
    """What a machine offers to replicas."""

    cpu_cores: int
    memory_bytes: int
    gpus: tuple[Gpu, ...] = field(default=())

    @property
    def accelerator(self) -> str:
        """The accelerator type its GPUs suggest ("NVIDIA A10G" -> "nvidia-a10g"); empty
        without GPUs."""
        return (
            re.sub(r"[^a-z0-9]+", "-", self.gpus[0].model.lower()).strip("-") if self.gpus else ""
        )


def probe_machine() -> Machine:
    """Read this machine's cores, memory and GPUs."""
    cores = psutil.cpu_count(logical=True) or 1
    return Machine(
        cpu_cores=cores, memory_bytes=psutil.virtual_memory().total, gpus=tuple(find_gpus())
    )


def find_gpus() -> list[Gpu]:
    """The GPUs NVML or ``nvidia-smi`` report; none when neither is there or both fail."""
    nvml = _nvml()
    if nvml is not None:
        return [
            Gpu(
                _text(nvml.nvmlDeviceGetName(handle)),
                int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
                _text(nvml.nvmlDeviceGetUUID(handle)),
            )
            for handle in _nvml_handles(nvml)
        ]
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return []
    try:
        output = subprocess.run(
            [binary, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=15, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        _log.warning("nvidia-smi failed (%s); reporting no GPU", exc)
        return []
    return parse_nvidia_smi(output.stdout)


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """Parse the output of ``nvidia-smi`` with :data:`NVIDIA_SMI_QUERY`: one
    ``name, memory MiB, uuid`` line per GPU. Lines that do not parse are skipped."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            model, memory, uuid = (part.strip() for part in line.rsplit(",", 2))
            gpus.append(Gpu(model, int(float(memory) * _MIB), uuid))
        except ValueError:
            _log.warning("ignoring an nvidia-smi line that does not parse: %r", line)
    return gpus


def read_usage() -> node_pb2.NodeUsage:
    """The machine's usage now: CPU busy fraction since the previous call, memory in use
    (total less available), and GPU busy fraction when NVML is there."""
    memory = psutil.virtual_memory()
    return node_pb2.NodeUsage(
        cpu_utilization=psutil.cpu_percent(interval=None) / 100.0,
        memory_used_bytes=memory.total - memory.available,
        gpu_utilization=_gpu_utilization(),
    )


def _gpu_utilization() -> float:
    nvml = _nvml()
    if nvml is None:
        return 0.0
    rates = [nvml.nvmlDeviceGetUtilizationRates(handle).gpu for handle in _nvml_handles(nvml)]
    return sum(rates) / len(rates) / 100.0 if rates else 0.0


@functools.cache
def _nvml() -> ModuleType | None:
    """NVML, initialised once, when ``pynvml`` imports and a driver answers."""
    try:
        import pynvml  # type: ignore[import-not-found]  # optional: GPU nodes install it

        pynvml.nvmlInit()
    except Exception:
        return None
    nvml: ModuleType = pynvml
    return nvml


def _nvml_handles(nvml: ModuleType) -> list[object]:
    return [nvml.nvmlDeviceGetHandleByIndex(index) for index in range(nvml.nvmlDeviceGetCount())]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def address_towards(server: str) -> str:
    """The local IP address this machine reaches ``server`` (``host:port``) from, which
    is where the control plane's peers can reach it back. Sends nothing."""
    host, _, port = server.rpartition(":")
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host.strip("[]"), int(port or 0)))
        except OSError:
            return "127.0.0.1"
        return str(probe.getsockname()[0])
