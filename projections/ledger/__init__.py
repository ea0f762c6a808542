"""The usage ledger: every job once, and counts per account, API surface, channel and hour."""
