"""Files in and out, with no database and no daemon around them.

Readers turn bytes into validated rows and row errors (``feeds`` for quantity
feeds, ``orders`` for order and cancellation files, ``listings`` for a
market's listings), built on ``decode``, ``layout`` (where the header is),
``headers`` (which column is which), ``validate`` and ``xlsx``. Writers make
what Stockdrop hands out: the result file (``results``), the Quantity Update
template (``template``), with spreadsheet-safe cells (``cells``).
"""
