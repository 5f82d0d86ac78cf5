"""The callback's query is read exactly as the standard library reads it, whatever WeChat (or anyone) sends."""

from __future__ import annotations

import random
from urllib.parse import parse_qsl, urlencode

from app.testing import signed_query
from app.verify import query_pairs, read_query
from tests.conftest import TOKEN

TRICKY = [
    "",
    "&",
    "&&a=1&&",
    "a",
    "a=",
    "=a",
    "=",
    "a==b",
    "a=1&a=2",
    "a=%20b+c",
    "na%6De=x",
    "a=%zz",
    "a=%E4%BD%A0%E5%A5%BD",
    "a=%ff%fe",
    "a+b=c+d",
    "a=1;b=2",
    "signature=abc&timestamp=1&nonce=2&openid=o%2Bx",
]


def test_tricky_queries_read_as_parse_qsl_reads_them():
    for query in TRICKY:
        assert query_pairs(query) == parse_qsl(query, keep_blank_values=True), query


def test_random_queries_read_as_parse_qsl_reads_them():
    rng = random.Random(20261130)
    alphabet = "ab=&%+;2fEF0 你"
    for _ in range(5000):
        query = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))
        assert query_pairs(query) == parse_qsl(query, keep_blank_values=True), query


def test_an_encoded_openid_is_decoded_and_the_push_still_verifies():
    query = signed_query(TOKEN)
    query["openid"] = "o+x/y z"
    read = read_query(urlencode(query))
    assert read.signature == query["signature"]
    assert dict(query_pairs(urlencode(query)))["openid"] == "o+x/y z"
