"""Reading an answer entry by entry when part of it nests too deeply to decode."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from riskwatch.source.deep import TooDeep, read_top_level, split_deep

DEEP = "[" * 5000 + "]" * 5000

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=4))
def test_a_shallow_answer_reads_as_json_would(document: dict[str, Any]) -> None:
    """Without deep nesting, the top level read by hand equals the whole document decoded."""
    text = json.dumps(document, indent=1)
    assert read_top_level(text) == json.loads(text, parse_float=Decimal)


def test_a_deep_entry_is_skipped_with_its_names_and_its_neighbours_kept() -> None:
    """A deep entry whose strings hold brackets is skipped whole; the names in it are
    kept; the entries around it decode as usual."""
    entry = ('{"account_name": "desk-[2]", "exchange_name": "OKX", "note": "]]}}",'
             f' "assets": {DEEP}}}')
    text = f'{{"balances": [{{"a": 1}}, {entry} , {{"b": "]"}}], "errors": []}}'
    top = read_top_level(text)
    assert top["balances"][0] == {"a": 1} and top["balances"][2] == {"b": "]"}
    assert top["balances"][1] == TooDeep("desk-[2]", "OKX")
    kept, found = split_deep(top["balances"], lambda too_deep: too_deep.account)
    assert kept == [{"a": 1}, {"b": "]"}] and found == ["desk-[2]"]


@pytest.mark.parametrize("text", ["[1, 2]", '{"a": [1, 2', '{"a": ' + "[" * 5000, "", '{"a" 1}'])
def test_what_is_not_an_object_or_never_ends_is_a_value_error(text: str) -> None:
    """A top level that is not an object, or an array that never ends, is refused."""
    with pytest.raises(ValueError):
        read_top_level(text)


def test_a_deep_error_entry_is_named_by_whichever_field_names_it() -> None:
    """An errors[] entry names its account by account_name, account_id or name."""
    for field in ("account_name", "account_id", "name"):
        top = read_top_level(f'{{"errors": [{{"{field}": "desk-9", "message": {DEEP}}}]}}')
        assert top["errors"] == [TooDeep("desk-9", None)], field
