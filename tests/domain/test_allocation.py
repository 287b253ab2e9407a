"""Allocation of an order's units over the sources, in priority order."""

from __future__ import annotations

import pytest

from daemon.inventory.allocation import Allocation, SourceInfo, allocate, default_priority

PRIORITY = ["mf", "east", "west"]


@pytest.mark.parametrize(
    ("quantity", "available", "split", "expected"),
    [
        pytest.param(
            3,
            {"mf": 5, "east": 5},
            False,
            Allocation(taken=(("mf", 3),)),
            id="merchant-fulfilled-ships-when-it-has-enough",
        ),
        pytest.param(
            3,
            {"mf": 2, "east": 5},
            False,
            Allocation(taken=(("east", 3),)),
            id="without-split-the-first-source-with-enough-ships-it-all",
        ),
        pytest.param(
            3,
            {"mf": 2, "east": 2, "west": 1},
            False,
            Allocation(taken=(("mf", 2),), shortfall=1, shortfall_source="mf"),
            id="without-split-and-no-source-with-enough-the-first-oversells",
        ),
        pytest.param(
            3,
            {},
            False,
            Allocation(shortfall=3, shortfall_source="mf"),
            id="nothing-anywhere-is-all-shortfall-on-the-first-source",
        ),
        pytest.param(
            3,
            {"mf": 2, "east": 2},
            True,
            Allocation(taken=(("mf", 2), ("east", 1))),
            id="with-split-each-source-gives-what-it-has",
        ),
        pytest.param(
            6,
            {"mf": 2, "east": 2, "west": 1},
            True,
            Allocation(
                taken=(("mf", 2), ("east", 2), ("west", 1)), shortfall=1, shortfall_source="mf"
            ),
            id="with-split-the-rest-is-shortfall-on-the-first-source",
        ),
        pytest.param(
            2,
            {"mf": -5, "east": 1, "west": 4},
            True,
            Allocation(taken=(("east", 1), ("west", 1))),
            id="negative-availability-counts-as-zero",
        ),
        pytest.param(0, {"mf": 5}, False, Allocation(), id="zero-units-take-nothing"),
        pytest.param(
            2,
            {"north": 9},
            False,
            Allocation(shortfall=2, shortfall_source="mf"),
            id="sources-outside-the-priority-list-are-not-used",
        ),
    ],
)
def test_allocate_takes_units_in_priority_order(quantity, available, split, expected):
    result = allocate(quantity, available, PRIORITY, split=split)
    assert result == expected
    assert result.quantity == quantity


@pytest.mark.parametrize(
    ("quantity", "priority", "message"),
    [
        pytest.param(-1, PRIORITY, "0 or more", id="negative-quantity"),
        pytest.param(1, [], "priority list is empty", id="no-sources"),
    ],
)
def test_allocate_refuses_what_cannot_be_allocated(quantity, priority, message):
    with pytest.raises(ValueError, match=message):
        allocate(quantity, {"mf": 1}, priority, split=False)


def test_a_source_listed_twice_is_taken_from_once():
    assert allocate(4, {"mf": 2}, ["mf", "mf"], split=True) == Allocation(
        taken=(("mf", 2),),
        shortfall=2,
        shortfall_source="mf",
    )


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        pytest.param(
            [
                SourceInfo("w2", priority=20),
                SourceInfo("mf", "merchant-fulfilled", 0),
                SourceInfo("w1", priority=10),
            ],
            ["mf", "w1", "w2"],
            id="merchant-fulfilled-first-then-warehouses-by-priority",
        ),
        pytest.param(
            [SourceInfo("w1", priority=-5), SourceInfo("mf", "merchant-fulfilled", 50)],
            ["mf", "w1"],
            id="merchant-fulfilled-first-whatever-its-priority-number",
        ),
        pytest.param(
            [SourceInfo("b"), SourceInfo("a"), SourceInfo("mf", "merchant-fulfilled")],
            ["mf", "b", "a"],
            id="equal-priorities-keep-the-configured-order",
        ),
    ],
)
def test_default_priority_puts_merchant_fulfilled_first(sources, expected):
    assert default_priority(sources) == expected


def test_allocation_knows_what_it_took_from_each_source():
    allocation = Allocation(taken=(("mf", 2), ("east", 1)), shortfall=3, shortfall_source="mf")
    assert allocation.taken_from("mf") == 2
    assert allocation.taken_from("west") == 0
    assert allocation.quantity == 6
