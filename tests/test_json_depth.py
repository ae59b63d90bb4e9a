"""``rmm.parsing.json_depth_exceeds`` answers exactly as the byte-by-byte walk that defines it, on any bytes: its C
fast path (strings cut out, bracket pairs removed level by level) may only decide what the walk would. And
``value_nests_deeper_than`` answers on a decoded value as ``json_depth_exceeds`` does on its text."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from rmm.parsing import _walk_exceeds, json_depth_exceeds, value_nests_deeper_than

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


# Decoded JSON values: containers of both kinds nested to any depth, with scalars beside them.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=2), children, max_size=3),
    max_leaves=40,
)


@settings(max_examples=2000, deadline=None)
@given(JSON_VALUES, st.integers(min_value=0, max_value=8))
def test_a_decoded_value_is_too_deep_exactly_when_its_text_is(value, max_depth):
    assert value_nests_deeper_than(value, max_depth) == json_depth_exceeds(json.dumps(value), max_depth), value


def test_a_decoded_value_at_the_limit():
    assert value_nests_deeper_than(json.loads("[" * 33 + "]" * 33))
    assert not value_nests_deeper_than(json.loads("[" * 32 + "]" * 32))
    assert not value_nests_deeper_than(json.loads(json.dumps({"software": [{"name": "a"}] * 300})))
    assert not value_nests_deeper_than("[" * 40, 0)  # text is no container
