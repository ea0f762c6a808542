"""The legacy normaliser as a consumer: legacy operation events in, JobCompleted out through the outbox."""
