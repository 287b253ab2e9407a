"""Channel rules: buffer, percentage (rounded down), maximum, minimum."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.inventory.channels import ChannelRules, apply_rules, available_sum, market_quantity


@pytest.mark.parametrize(
    ("available", "sources", "rules", "expected"),
    [
        pytest.param(
            {"mf": 5, "w1": 7}, None, ChannelRules(), 12, id="no-rules-send-the-sum-of-all-sources"
        ),
        pytest.param(
            {"mf": 5, "w1": 7}, {"w1"}, ChannelRules(), 7, id="only-the-markets-sources-count"
        ),
        pytest.param(
            {"mf": 5}, {"mf", "gone"}, ChannelRules(), 5, id="an-unknown-source-counts-as-zero"
        ),
        pytest.param(
            {"mf": -4, "w1": 6},
            None,
            ChannelRules(),
            6,
            id="a-negative-source-does-not-eat-the-others",
        ),
        pytest.param({"mf": 10}, None, ChannelRules(buffer=3), 7, id="the-buffer-is-held-back"),
        pytest.param(
            {"mf": 2}, None, ChannelRules(buffer=3), 0, id="a-buffer-larger-than-stock-sends-zero"
        ),
        pytest.param({"mf": 7}, None, ChannelRules(percent=33), 2, id="the-percentage-rounds-down"),
        pytest.param(
            {"mf": 100}, None, ChannelRules(percent=29), 29, id="no-float-error-in-the-percentage"
        ),
        pytest.param(
            {"mf": 1}, None, ChannelRules(percent=99), 0, id="one-unit-at-99-percent-is-zero"
        ),
        pytest.param({"mf": 10}, None, ChannelRules(percent=0), 0, id="zero-percent-sends-zero"),
        pytest.param(
            {"mf": 10},
            None,
            ChannelRules(buffer=2, percent=50),
            4,
            id="buffer-comes-before-percentage",
        ),
        pytest.param({"mf": 50}, None, ChannelRules(maximum=20), 20, id="the-maximum-caps"),
        pytest.param({"mf": 50}, None, ChannelRules(maximum=0), 0, id="a-zero-maximum-sends-zero"),
        pytest.param(
            {"mf": 3}, None, ChannelRules(minimum=4), 0, id="below-the-minimum-sends-zero"
        ),
        pytest.param({"mf": 4}, None, ChannelRules(minimum=4), 4, id="at-the-minimum-sends-it"),
        pytest.param(
            {"mf": 50},
            None,
            ChannelRules(maximum=3, minimum=5),
            0,
            id="a-maximum-below-the-minimum-sends-zero",
        ),
        pytest.param({}, None, ChannelRules(), 0, id="no-sources-send-zero"),
    ],
)
def test_market_quantity_applies_the_rules_in_order(available, sources, rules, expected):
    assert market_quantity(available, sources, rules) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"buffer": -1}, "buffer must be 0 or more", id="negative-buffer"),
        pytest.param({"percent": -1}, "percent must be between 0 and 100", id="negative-percent"),
        pytest.param({"percent": 101}, "percent must be between 0 and 100", id="percent-over-100"),
        pytest.param({"maximum": -1}, "maximum must be 0 or more", id="negative-maximum"),
        pytest.param({"minimum": -1}, "minimum must be 0 or more", id="negative-minimum"),
        pytest.param({"percent": 50.5}, "percent must be a whole number", id="fractional-percent"),
        pytest.param({"buffer": True}, "buffer must be a whole number", id="boolean-buffer"),
    ],
)
def test_channel_rules_refuse_impossible_values_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ChannelRules(**kwargs)


def test_available_sum_counts_negatives_as_zero():
    assert available_sum({"a": -3, "b": 2}, None) == 2
    assert available_sum({"a": -3, "b": 2}, {"a"}) == 0


def test_apply_rules_never_sends_more_than_the_total():
    for total in range(40):
        assert apply_rules(total, ChannelRules(percent=100, minimum=0)) == total


_rules = st.builds(ChannelRules, buffer=st.integers(0, 50), percent=st.integers(0, 100),
                   maximum=st.one_of(st.none(), st.integers(0, 500)), minimum=st.integers(0, 50))


@given(rules=_rules, totals=st.lists(st.integers(0, 10**6), max_size=40))
def test_the_set_wise_rules_give_what_apply_rules_gives_for_every_total(rules, totals):
    import polars as pl

    from daemon.inventory.channels import rules_expr

    frame = pl.DataFrame({"available": totals}, schema={"available": pl.Int64})
    got = frame.select(rules_expr(pl.col("available"), rules).alias("q")).get_column("q").to_list()
    assert got == [apply_rules(t, rules) for t in totals]
