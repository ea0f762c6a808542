"""The account registry every consumer reads: who an account is and how it is billed."""
