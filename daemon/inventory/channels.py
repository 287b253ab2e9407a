"""Per-market channel rules: how much of the available stock a market is sent.

Peers give merchants four knobs per market (buffer, percentage, maximum,
minimum). They are applied in one fixed order so the same stock always yields
the same number, and the result is never more than what the sources hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import polars as pl


def _whole(name: str, value: object) -> int:
    # bool is an int subclass; True as a buffer is a config mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}")  # noqa: TRY004 - a bad rule value, as the range checks below
    return value


@dataclass(frozen=True)
class ChannelRules:
    """What a market is sent, given what its sources have available.

    ``buffer`` units are held back (safety stock), ``percent`` of the rest is
    offered (rounded down), ``maximum`` caps it, and a result below
    ``minimum`` is sent as 0 (too few to be worth advertising).
    """

    buffer: int = 0
    percent: int = 100
    maximum: int | None = None
    minimum: int = 0

    def __post_init__(self) -> None:
        if _whole("buffer", self.buffer) < 0:
            raise ValueError(f"buffer must be 0 or more, got {self.buffer}")
        if not 0 <= _whole("percent", self.percent) <= 100:
            raise ValueError(f"percent must be between 0 and 100, got {self.percent}")
        if self.maximum is not None and _whole("maximum", self.maximum) < 0:
            raise ValueError(f"maximum must be 0 or more, got {self.maximum}")
        if _whole("minimum", self.minimum) < 0:
            raise ValueError(f"minimum must be 0 or more, got {self.minimum}")


@dataclass(frozen=True)
class Market:
    """A market of one merchant: which sources feed it and its rules.

    ``sources`` None means every source of the merchant.
    """

    name: str
    sources: frozenset[str] | None = None
    rules: ChannelRules = ChannelRules()


def available_sum(available_by_source: Mapping[str, int], sources: AbstractSet[str] | None) -> int:
    """Units available over ``sources`` (None = all); negatives count as 0.

    A negative level (a source that oversold, or a feed that says -3) must not
    eat into what the other sources can sell.
    """
    if sources is None:
        return sum(max(0, q) for q in available_by_source.values())
    return sum(max(0, available_by_source.get(s, 0)) for s in sources)


def apply_rules(total: int, rules: ChannelRules) -> int:
    """The quantity to send for ``total`` available units under ``rules``."""
    quantity = max(0, total - rules.buffer)
    # Integer arithmetic: 7 * 33 // 100 == 2 exactly, where 7 * 0.33 could
    # round either way in binary floating point.
    quantity = quantity * rules.percent // 100
    if rules.maximum is not None:
        quantity = min(quantity, rules.maximum)
    if quantity < rules.minimum:
        return 0
    return quantity


def market_quantity(
    available_by_source: Mapping[str, int],
    sources: AbstractSet[str] | None,
    rules: ChannelRules,
) -> int:
    """What one market is sent for one SKU. Never more than the sources hold."""
    return apply_rules(available_sum(available_by_source, sources), rules)


def rules_expr(available: pl.Expr, rules: ChannelRules) -> pl.Expr:
    """``apply_rules`` over a column of available units, set-wise (an export of a million listings).

    The same steps in the same order, in integer arithmetic; a property test
    holds it to ``apply_rules`` value for value.
    """
    quantity = pl.max_horizontal(available - rules.buffer, pl.lit(0)) * rules.percent // 100
    if rules.maximum is not None:
        quantity = pl.min_horizontal(quantity, pl.lit(rules.maximum))
    return pl.when(quantity < rules.minimum).then(pl.lit(0)).otherwise(quantity).cast(pl.Int64)
