"""``rmm.parsing.json_depth_exceeds`` answers exactly as the byte-by-byte walk that defines it, on any bytes: its C
fast path (strings cut out, bracket pairs removed level by level) may only decide what the walk would."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from rmm.parsing import _walk_exceeds, json_depth_exceeds

# Bytes made of what matters to the check (brackets of both kinds, quotes, backslashes, a newline) and filler.
JSONISH = st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b"\n", b"a", b",", b":"]), max_size=120)


@settings(max_examples=3000, deadline=None)
@given(JSONISH, st.integers(min_value=0, max_value=6))
def test_the_fast_path_answers_as_the_walk_on_any_bytes(parts, max_depth):
    raw = b"".join(parts)
    assert json_depth_exceeds(raw, max_depth) == _walk_exceeds(raw, max_depth), raw


def test_the_cases_that_matter():
    software = json.dumps({"software": [{"name": f"app [{n}] {{x}}", "version": '1"2'} for n in range(300)]})
    assert not json_depth_exceeds(software)
    assert json_depth_exceeds(b"[" * 33 + b"]" * 33) and not json_depth_exceeds(b"[" * 32 + b"]" * 32)
    assert json_depth_exceeds(b"[" * 5000)  # unbalanced: the walk decides
    assert not json_depth_exceeds(b'{"a": "' + b"[" * 100 + b'"}')  # brackets inside a string do not count
    assert not json_depth_exceeds(b'{"a": "\\"' + b"[" * 100 + b'"}')  # nor after an escaped quote
    assert json_depth_exceeds(b'{"a": "\\\\"' + b"[" * 40)  # an escaped backslash ends no string
    assert json_depth_exceeds(b'"unterminated' + b"[" * 40) is _walk_exceeds(b'"unterminated' + b"[" * 40, 32)
