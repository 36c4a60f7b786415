"""compact_encoder: json.dumps's compact text from an encoder made once."""

from __future__ import annotations

import json
from datetime import date

import pytest

from compliance.compact_json import compact_encoder

VALUES = [
    {"actor_id": "tok_1", "details": None, "n": 3, "ratio": 0.1, "ok": True, "nested": {"b": [1, {"a": []}]}},
    {"z": 1, "a": {"y": 2, "b": 3}},  # sort_keys sorts at every level
    {"name": "Zoë Ünal ✓ 𝄞", "escapes": "quote\" backslash\\ newline\n tab\t nul\x00 \u2028"},
    [float("nan"), float("inf"), -float("inf"), 1e300, -0.0, 10**30],
    "a bare string ✓", "", 7, 2.5, None, False, [], {},
]


@pytest.mark.parametrize("ensure_ascii", [True, False])
@pytest.mark.parametrize("sort_keys", [True, False])
def test_the_text_is_json_dumps_compact_text_for_the_same_options(ensure_ascii, sort_keys):
    encode = compact_encoder(ensure_ascii=ensure_ascii, sort_keys=sort_keys)
    for value in VALUES:
        expected = json.dumps(value, separators=(",", ":"), ensure_ascii=ensure_ascii, sort_keys=sort_keys)
        assert encode(value) == expected
        assert encode(value) == expected  # made once, used again


def test_default_serialises_what_json_cannot_and_without_it_that_is_a_type_error():
    with_default = compact_encoder(ensure_ascii=True, sort_keys=True, default=lambda v: v.isoformat())
    assert with_default({"on": date(2026, 12, 2), "b": [date(1, 1, 1)]}) == '{"b":["0001-01-01"],"on":"2026-12-02"}'
    with pytest.raises(TypeError):
        compact_encoder(ensure_ascii=False)({"on": date(2026, 12, 2)})
    with pytest.raises(TypeError):  # sorting keys of different types fails as json.dumps does
        compact_encoder(ensure_ascii=False, sort_keys=True)({1: "a", "b": 2})
