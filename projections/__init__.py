"""Read models folded from events: pure `apply` logic, and each projection's Postgres store.

Every projection lives in a Postgres schema of its own, with its Kafka positions in that same schema,
written in the same transaction as its rows. Replay builds a projection afresh in a shadow schema.
"""
