"""Order, cancellation and listing files from markets: parsing only (no SQL).

The rules live in ``daemon.inventory``; the database side in ``daemon.db.orders``
and ``daemon.db.markets``.
"""
