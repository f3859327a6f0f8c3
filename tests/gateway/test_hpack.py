"""HPACK in the fast lane (gateway/src/hpack.cpp) against RFC 7541 Appendix C: each
example's header blocks decoded in turn on one decoder, with the dynamic table after
each (Huffman strings in C.4 and C.6, evictions in C.5 and C.6)."""

from __future__ import annotations

import pytest

from tests.gateway.conftest import native_core

REQUEST_1 = [
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
]
REQUEST_2 = [*REQUEST_1, ("cache-control", "no-cache")]
REQUEST_3 = [
    (":method", "GET"),
    (":scheme", "https"),
    (":path", "/index.html"),
    (":authority", "www.example.com"),
    ("custom-key", "custom-value"),
]
DATE_1 = ("date", "Mon, 21 Oct 2013 20:13:21 GMT")
DATE_2 = ("date", "Mon, 21 Oct 2013 20:13:22 GMT")
LOCATION = ("location", "https://www.example.com")
COOKIE = ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")
RESPONSE_1 = [(":status", "302"), ("cache-control", "private"), DATE_1, LOCATION]
RESPONSE_2 = [(":status", "307"), ("cache-control", "private"), DATE_1, LOCATION]
RESPONSE_3 = [
    (":status", "200"),
    ("cache-control", "private"),
    DATE_2,
    LOCATION,
    ("content-encoding", "gzip"),
    COOKIE,
]
REQUESTS = [(REQUEST_1, 57, 1), (REQUEST_2, 110, 2), (REQUEST_3, 164, 3)]
RESPONSES = [(RESPONSE_1, 222, 4), (RESPONSE_2, 222, 4), (RESPONSE_3, 215, 3)]

EXAMPLES = {
    "C.3 requests": (
        4096,
        [
            "828684410f7777772e6578616d706c652e636f6d",
            "828684be58086e6f2d6361636865",
            "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
        ],
        REQUESTS,
    ),
    "C.4 requests, Huffman": (
        4096,
        [
            "828684418cf1e3c2e5f23a6ba0ab90f4ff",
            "828684be5886a8eb10649cbf",
            "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
        ],
        REQUESTS,
    ),
    "C.5 responses, evictions": (
        256,
        [
            (
                "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a"
                "323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d"
            ),
            "4803333037c1c0bf",
            (
                "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69"
                "707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d6178"
                "2d6167653d333630303b2076657273696f6e3d31"
            ),
        ],
        RESPONSES,
    ),
    "C.6 responses, Huffman, evictions": (
        256,
        [
            (
                "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29"
                "ad171863c78f0b97c8e9ae82ae43d3"
            ),
            "4883640effc1c0bf",
            (
                "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7"
                "f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007"
            ),
        ],
        RESPONSES,
    ),
}


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_rfc7541_appendix_c(example: str) -> None:
    table_size, blocks, expected = EXAMPLES[example]
    decoder = native_core().HpackDecoder(table_size)
    for block, (headers, size, entries) in zip(blocks, expected, strict=True):
        assert decoder.decode(bytes.fromhex(block)) == headers
        assert (decoder.table_size, decoder.table_entries) == (size, entries)


@pytest.mark.parametrize(
    "block",
    [
        "80",  # index 0
        "be",  # index 62 with an empty dynamic table
        "418cf1e3c2e5f23a6ba0ab90f4",  # a Huffman string cut short
        "4187ffffffffffffff",  # Huffman padding longer than 7 bits (EOS inside)
        "3fe21f",  # a table size update above the advertised size
        "823f",  # a table size update after a field (and truncated)
    ],
)
def test_malformed_blocks_are_refused(block: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        native_core().HpackDecoder().decode(bytes.fromhex(block))


def test_what_the_encoder_writes_decodes_to_the_same_headers_and_indexes_nothing() -> None:
    core = native_core()
    headers = [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "14"),
        ("grpc-message", "x" * 300),
        ("x-astra-refused", ""),
    ]
    decoder = core.HpackDecoder()
    assert decoder.decode(core.hpack_encode(headers)) == headers
    assert decoder.table_entries == 0
