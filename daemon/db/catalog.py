"""Merchants, sources and products: keeping the database in step with the config."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daemon.db.models import Merchant, Product, Source
from daemon.errors import NotFound
from daemon.inventory.allocation import SourceLike
from daemon.inventory.skus import spreadsheet_key


class MerchantSpec(Protocol):
    """A configured merchant (``settings.MerchantSettings`` fits)."""

    @property
    def name(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    def all_sources(self) -> Sequence[SourceLike]: ...


class Config(Protocol):
    """What the database keeps of the configuration (``settings.Settings`` fits)."""

    @property
    def merchants(self) -> Sequence[MerchantSpec]: ...


def sync_config(session: Session, settings: Config, now: datetime) -> None:
    """Create the merchants and sources the config names; update what changed.

    Nothing is deleted: a source removed from the config keeps its history and
    stock until an operator removes it on purpose.
    Every merchant gets its merchant-fulfilled source here.
    """
    for m in settings.merchants:
        merchant = session.scalar(select(Merchant).where(Merchant.name == m.name))
        if merchant is None:
            merchant = Merchant(name=m.name, timezone=m.timezone, created_at=now)
            session.add(merchant)
            session.flush()
        merchant.timezone = m.timezone
        for s in m.all_sources():
            source = session.scalar(
                select(Source).where(Source.merchant_id == merchant.id, Source.name == s.name)
            )
            if source is None:
                session.add(
                    Source(merchant_id=merchant.id, name=s.name, kind=s.kind,
                           priority=s.priority, created_at=now)
                )
            else:
                source.kind, source.priority = s.kind, s.priority
    session.flush()


def source_ids(session: Session, merchant: str, source: str) -> tuple[int, int] | None:
    """(source id, merchant id) of a synced source, or None."""
    row = session.execute(
        select(Source.id, Source.merchant_id).join(Merchant)
        .where(Merchant.name == merchant, Source.name == source)
    ).first()
    return (row[0], row[1]) if row else None


def get_merchant(session: Session, name: str) -> Merchant:
    merchant = session.scalar(select(Merchant).where(Merchant.name == name))
    if merchant is None:
        raise NotFound(f"no merchant named {name!r}")
    return merchant


def get_source(session: Session, merchant: str, source: str) -> Source:
    found = session.scalar(
        select(Source).join(Merchant).where(Merchant.name == merchant, Source.name == source)
    )
    if found is None:
        names = session.scalars(
            select(Source.name).join(Merchant).where(Merchant.name == merchant).order_by(Source.name)
        ).all()
        raise NotFound(
            f"no source named {source!r} for merchant {merchant!r} (sources: {', '.join(names) or 'none'})"
        )
    return found


def get_or_create_product(session: Session, merchant_id: int, sku: str, now: datetime) -> Product:
    product = session.scalar(
        select(Product).where(Product.merchant_id == merchant_id, Product.sku == sku)
    )
    if product is None:
        product = Product(merchant_id=merchant_id, sku=sku, created_at=now)
        session.add(product)
        session.flush()
    return product


_CHUNK = 500  # values per IN list


def known_skus(session: Session, merchant_id: int, skus: Sequence[str]) -> set[str]:
    """Which of ``skus`` the merchant's catalogue has."""
    found: set[str] = set()
    for start in range(0, len(skus), _CHUNK):
        found.update(session.scalars(select(Product.sku).where(
            Product.merchant_id == merchant_id, Product.sku.in_(skus[start:start + _CHUNK]))))
    return found


def lookalikes(session: Session, merchant_id: int, unknown: Sequence[str]) -> dict[str, str]:
    """For each unknown SKU, a catalogue SKU it may be the spreadsheet-mangled form of
    (``inventory.feed.spreadsheet_key``): ``17`` -> ``0017``, ``123.0`` -> ``123``."""
    keys = {sku: spreadsheet_key(sku) for sku in unknown}
    wanted = sorted({k for k in keys.values() if k})
    candidates: dict[str, list[str]] = {}
    for start in range(0, len(wanted), _CHUNK):
        for sku in session.scalars(select(Product.sku).where(
                Product.merchant_id == merchant_id, func.ltrim(Product.sku, "0").in_(wanted[start:start + _CHUNK]))):
            candidates.setdefault(spreadsheet_key(sku), []).append(sku)
    out = {}
    for sku, key in keys.items():
        others = sorted(c for c in candidates.get(key, ()) if c != sku)
        if others:
            out[sku] = others[0]
    return out
