"""Execution providers: TensorRT, CUDA, CPU, as hardware and packages allow; never a
silent CPU fallback for a replica given GPUs."""

from __future__ import annotations

import importlib.util
import logging

import pytest

from node_agent.replica import CPU, CUDA, TENSORRT, ModelLoadError, check_providers, plan_providers

ALL = [TENSORRT, CUDA, CPU]
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_a_replica_without_gpus_runs_on_the_cpu() -> None:
    plan = plan_providers(gpus=0, available=ALL)
    assert plan.names == [CPU]
    assert plan.skipped == ("GPU providers: the replica was given no GPU",)


def test_a_replica_with_gpus_asks_for_tensorrt_then_cuda_then_cpu(tmp_path: object) -> None:
    plan = plan_providers(gpus=1, available=ALL, engine_cache=tmp_path)  # type: ignore[arg-type]
    if HAS_TENSORRT:
        assert plan.names == [TENSORRT, CUDA, CPU]
        options = dict(plan.providers[0][1])  # type: ignore[index]
        assert options["trt_engine_cache_path"] == str(tmp_path)
    else:
        assert plan.names == [CUDA, CPU]
        assert plan.skipped == (f"{TENSORRT}: the tensorrt package is not installed",)


def test_providers_missing_from_the_build_are_skipped_with_a_reason() -> None:
    plan = plan_providers(gpus=2, available=[CPU])
    assert plan.names == [CPU]
    assert plan.skipped == (
        f"{TENSORRT}: not in this ONNX Runtime build (install the gpu extra)",
        f"{CUDA}: not in this ONNX Runtime build (install the gpu extra)",
    )


def test_a_cpu_fallback_fails_a_replica_given_gpus() -> None:
    plan = plan_providers(gpus=1, available=[CPU])
    with pytest.raises(ModelLoadError, match=f"runs on {CPU} although the replica was given 1 GPU"):
        check_providers("demo:1", plan, [CPU], gpus=1)


def test_a_fallback_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    plan = plan_providers(gpus=1, available=ALL)
    with caplog.at_level(logging.INFO, logger="node_agent.replica._providers"):
        assert check_providers("demo:1", plan, [CUDA, CPU], gpus=1) == CUDA
    if HAS_TENSORRT:
        assert (
            f"asked for {TENSORRT} > {CUDA} > {CPU}, ONNX Runtime gave {CUDA} > {CPU}"
            in caplog.text
        )
    assert f"demo:1 runs on {CUDA}" in caplog.text
    assert check_providers("demo:1", plan_providers(gpus=0, available=ALL), [CPU], gpus=0) == CPU
