"""The hot-path encoder writes exactly what the records' own encoding writes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from astra.records import AllocRecord, NodeRecord, Quantity, ReplicaRecord, ReplicaRole
from scheduling._codec import fields_of, pack, plain_fields_of, unpack_replicas

quantities = st.builds(Quantity, st.integers(0, 2**40), st.integers(0, 2**50), st.integers(0, 16))
texts = st.text(max_size=12)
replica_records = st.builds(
    ReplicaRecord,
    texts,
    texts,
    texts,
    ray_cluster=texts,
    role=st.sampled_from(ReplicaRole),
    resources=quantities,
    models=st.lists(st.dictionaries(texts, texts, max_size=3), max_size=2),
    app_generation=st.integers(0, 2**40),
    create_time=st.floats(0, 2e9),
)


@given(
    st.builds(
        AllocRecord,
        texts,
        st.dictionaries(texts, st.lists(st.integers(0, 2**50), min_size=3, max_size=3)),
    )
)
def test_allocations_encode_as_records_do(record: AllocRecord) -> None:
    assert pack(record) == record.to_bytes()
    assert AllocRecord.from_bytes(pack(record)) == record
    assert unpack_replicas(pack(record)) == {
        name: tuple(amounts) for name, amounts in record.replicas.items()
    }


@given(replica_records)
def test_replicas_and_their_fields_encode_as_records_do(record: ReplicaRecord) -> None:
    assert pack(record) == record.to_bytes()
    assert pack(fields_of(record)) == record.to_bytes()
    plain = plain_fields_of(record)
    assert pack(plain) == record.to_bytes()
    assert all(isinstance(value, int | float | str | list | dict) for value in plain.values())


@given(
    st.builds(
        NodeRecord, texts, texts, quantities, labels=st.dictionaries(texts, texts, max_size=3)
    )
)
def test_nodes_encode_as_records_do(record: NodeRecord) -> None:
    assert pack(record) == record.to_bytes()


def test_a_failed_encoding_leaves_the_shared_packer_clean() -> None:
    record = AllocRecord("n", {"a": [1, 2, 3]})
    with pytest.raises(TypeError):
        pack({"bad": object()})
    assert pack(record) == record.to_bytes()
