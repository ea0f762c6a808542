"""API keys: the key store, folded from the `keys` topic (the key lifecycle, which suspends and restores keys
on Stripe's dunning events, is `projections.key_lifecycle`)."""
