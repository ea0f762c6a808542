"""Fault injection across the whole pipeline: a workload through ingest while servers are killed and restarted,
then the invariants that must hold whatever happened (`jobmeter chaos`)."""
