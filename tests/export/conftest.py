"""The market-side FTP/FTPS server fixtures (defined with the destination tests), for every export test."""

from tests.export.test_destinations import home, start_server, tls_files  # noqa: F401 - fixtures
