"""Feature selection by IV threshold and top-k."""

from __future__ import annotations

import pytest

from vfl.errors import DataError
from vfl.selection import SelectionRule, own_columns, select_by_iv

IV = {"a": 0.5, "b": 0.01, "host.c": 0.3, "host.d": 0.3, "e": 0.0}


def test_threshold_keeps_features_with_iv_at_or_above_it():
    sel = select_by_iv(IV, SelectionRule(iv_threshold=0.3))
    assert sel.kept == ["a", "host.c", "host.d"]
    reasons = {d.feature: d.reason for d in sel.decisions}
    assert reasons["b"] == "IV below 0.3"


def test_top_k_applies_after_the_threshold_and_ties_keep_input_order():
    sel = select_by_iv(IV, SelectionRule(iv_threshold=0.02, top_k=2))
    assert sel.kept == ["a", "host.c"]
    assert {d.feature: d.reason for d in sel.decisions}["host.d"] == "not in the top 2"
    assert [d.rank for d in sel.decisions] == [1, 4, 2, 3, 5]


def test_single_bin_features_are_always_dropped():
    sel = select_by_iv(IV, SelectionRule(iv_threshold=0.0), uninformative={"e": "constant column"})
    assert "e" in sel.dropped and "b" in sel.kept
    assert sel.to_json()["dropped"][0] == {"feature": "e", "iv": 0.0, "rank": 5, "reason": "constant column"}


def test_each_party_takes_its_own_columns_in_its_own_order():
    public = {"d": "host.d", "c": "host.c", "z": "host.z"}
    assert own_columns(["a", "host.c", "host.d"], public) == ["d", "c"]


def test_bad_rules_are_refused():
    with pytest.raises(DataError, match="iv_threshold must be >= 0"):
        SelectionRule(iv_threshold=-1)
    with pytest.raises(DataError, match="top_k must be an integer >= 0"):
        SelectionRule(top_k=-2)
    with pytest.raises(DataError, match="no features"):
        select_by_iv({}, SelectionRule())
