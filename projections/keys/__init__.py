"""API keys: the key store (folded from the `keys` topic) and the key lifecycle (Stripe dunning → key events)."""
