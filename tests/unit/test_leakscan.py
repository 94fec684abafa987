"""The Secret-value scanner used by tests/integration/test_secret_leaks.py catches what it should."""

from __future__ import annotations

import base64
import json

from tests.leakscan import leaks

VALUE = "hf_0123456789abcdefXYZ"


def test_finds_the_raw_value_in_a_log_line() -> None:
    line = f"DEBUG patching env HF_TOKEN={VALUE} done"
    assert leaks(line, [VALUE]) == [f"{VALUE[:6]}... as raw at offset {line.index('=') + 1}"]


def test_finds_the_base64_value_in_a_dumped_secret() -> None:
    dumped = json.dumps({"data": {"token": base64.b64encode(VALUE.encode()).decode()}})
    assert [line.split(" as ")[1].split(" ")[0] for line in leaks(dumped, [VALUE])] == [
        "base64",
        "base64-unpadded",
        "base64url",
    ]


def test_nothing_found_where_only_the_reference_is() -> None:
    text = json.dumps({"secretKeyRef": {"name": "hf", "key": "token"}, "other": VALUE[:-1]})
    assert leaks(text, [VALUE]) == []
