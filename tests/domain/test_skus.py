from __future__ import annotations

import pytest

from daemon.inventory.skus import spreadsheet_key


@pytest.mark.parametrize(("sku", "key"), [
    ("0017", "17"), ("17", "17"), ("0012-CT-BLK", "12-CT-BLK"), ("123.0", "123"), ("0123.00", "123"),
    ("0", "0"), ("00", "0"), ("0A-1", "0A-1"), ("A-0017", "A-0017"), ("12.5", "12.5"),
])
def test_the_key_is_what_a_spreadsheet_leaves_of_a_sku(sku: str, key: str) -> None:
    assert spreadsheet_key(sku) == key
