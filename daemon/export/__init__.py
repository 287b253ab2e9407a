"""Files out: quantity feeds to markets and order files to warehouses.

Planned as: ``plan`` (the delta against what each market acknowledged),
``outbox`` (a delivery recorded before it is sent), ``sender`` (through
``daemon.transports``), ``schedule``. It meets ingest only in the domain core,
the database and the transports, never by importing it.
"""
