"""Which ONNX Runtime execution providers a replica asks for, and what it got.

The order is TensorRT, then CUDA, then CPU, keeping those the replica's hardware and
the installed packages allow: GPU providers only for a replica given GPUs, TensorRT only
when the ``tensorrt`` package is importable (``onnxruntime-gpu`` and ``tensorrt`` are
the ``gpu`` extra). ONNX Runtime silently falls back to the CPU when a GPU provider
cannot start (missing CUDA libraries, no device): :func:`check_providers` makes that
fallback loud, and fatal for a replica that was given GPUs.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node_agent.replica._errors import ModelLoadError

_log = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
#: Providers that run on a GPU.
GPU_PROVIDERS = frozenset({TENSORRT, CUDA})

#: A provider as ONNX Runtime takes it: a name, or a name and its options.
Provider = str | tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ProviderPlan:
    """The providers to ask for, best first, and why better ones were left out."""

    providers: tuple[Provider, ...]
    skipped: tuple[str, ...] = field(default=())

    @property
    def names(self) -> list[str]:
        """The providers' names, best first."""
        return [
            provider if isinstance(provider, str) else provider[0] for provider in self.providers
        ]


def plan_providers(
    *, gpus: int, available: Sequence[str], engine_cache: Path | None = None
) -> ProviderPlan:
    """The providers for a replica given ``gpus`` GPUs, among ``available`` (what
    ``onnxruntime.get_available_providers()`` lists).

    Args:
        gpus: GPUs the replica was given (Ray sets ``CUDA_VISIBLE_DEVICES`` to them).
        available: the providers the installed ONNX Runtime was built with.
        engine_cache: where TensorRT keeps the engines it builds (building one takes
            minutes; a cache makes restarts fast).
    """
    providers: list[Provider] = []
    skipped: list[str] = []
    if gpus <= 0:
        skipped.append("GPU providers: the replica was given no GPU")
    else:
        if TENSORRT not in available:
            skipped.append(f"{TENSORRT}: not in this ONNX Runtime build (install the gpu extra)")
        elif importlib.util.find_spec("tensorrt") is None:
            skipped.append(f"{TENSORRT}: the tensorrt package is not installed")
        else:
            options: dict[str, Any] = {"device_id": 0}
            if engine_cache is not None:
                options |= {
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(engine_cache),
                }
            providers.append((TENSORRT, options))
        if CUDA in available:
            providers.append((CUDA, {"device_id": 0}))
        else:
            skipped.append(f"{CUDA}: not in this ONNX Runtime build (install the gpu extra)")
    providers.append(CPU)
    return ProviderPlan(tuple(providers), tuple(skipped))


def check_providers(model: str, plan: ProviderPlan, got: Sequence[str], *, gpus: int) -> str:
    """The provider ``model`` runs on (the first of ``got``, what the session reports),
    logged with what was asked for.

    Raises:
        ModelLoadError: the replica was given GPUs but the model runs on the CPU.
    """
    provider = got[0] if got else CPU
    for reason in plan.skipped:
        _log.info("%s: skipped %s", model, reason)
    if provider != plan.names[0]:
        _log.warning(
            "%s: asked for %s, ONNX Runtime gave %s", model, " > ".join(plan.names), " > ".join(got)
        )
    if gpus > 0 and provider not in GPU_PROVIDERS:
        raise ModelLoadError(
            f"model {model} runs on {provider} although the replica was given {gpus} GPU(s): "
            + ("; ".join(plan.skipped) or "the GPU providers failed to start (see the replica log)")
        )
    _log.info("%s runs on %s", model, provider)
    return provider
