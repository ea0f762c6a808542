"""The HTTP app: ingest, accounts, usage, health and metrics (FastAPI)."""
