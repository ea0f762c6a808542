"""The contract: event models, the envelope, topic names, versions and serialization, the publisher.

Nothing here talks to Postgres or Stripe; everything else depends on this package, never the reverse.
"""
