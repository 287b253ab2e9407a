"""Upload-history digests and alerts for merchants, sent through an email outbox."""
