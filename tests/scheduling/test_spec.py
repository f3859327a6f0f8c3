"""AppSpec: validation and how replicas are shared between Ray clusters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from astra.records import Quantity
from scheduling import AppSpec
from tests.scheduling.fleets import spec


@given(replicas=st.integers(0, 200), clusters=st.integers(1, 10))
def test_replicas_are_shared_evenly_between_clusters(replicas: int, clusters: int) -> None:
    sizes = spec("a", replicas, ray_clusters=clusters).cluster_sizes()
    assert sum(sizes) == replicas
    assert len(sizes) == min(replicas, clusters)
    assert sizes == sorted(sizes, reverse=True)
    assert not sizes or max(sizes) - min(sizes) <= 1


@given(replicas=st.integers(0, 200), workers=st.integers(1, 10), clusters=st.integers(1, 10))
def test_workers_per_cluster_fixes_each_clusters_size(
    replicas: int, workers: int, clusters: int
) -> None:
    sizes = spec("a", replicas, ray_clusters=clusters, workers_per_cluster=workers).cluster_sizes()
    assert sum(sizes) == replicas
    assert all(size == 1 + workers for size in sizes[:-1])
    assert not sizes or 1 <= sizes[-1] <= 1 + workers


@pytest.mark.parametrize(
    "options",
    [
        {"app_id": ""},
        {"app_id": "a/b"},
        {"replicas": -1},
        {"ray_clusters": 0},
        {"watermark": 0.0},
        {"watermark": 1.5},
        {"max_per_node": -1},
        {"resources": Quantity(-1, 0, 0)},
    ],
)
def test_invalid_specs_are_refused(options: dict[str, object]) -> None:
    values: dict[str, object] = {
        "app_id": "a",
        "replicas": 1,
        "resources": Quantity(1, 1, 0),
    } | options
    with pytest.raises(ValueError):
        AppSpec(**values)  # type: ignore[arg-type]
