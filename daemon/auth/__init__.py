"""Who may log in to the hosted endpoints: password hashing, accounts, bans, host keys."""
