"""Failures that mean "a server is restarting or out of reach": retry later, the data is not at fault."""

from __future__ import annotations

import asyncpg
from aiokafka.errors import KafkaError

TRANSIENT: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    KafkaError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,  # includes "the database system is starting up / shutting down"
    asyncpg.InsufficientResourcesError,
    # A deadlock or serialization failure rolled the transaction back; running it again is the documented cure.
    asyncpg.TransactionRollbackError,
)
