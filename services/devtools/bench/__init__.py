"""Benchmarks against the real stack: what ingest, the ledger fold, the key check and the Stripe reporter cost,
each beside what it is compared with.

Every run that touches the stack works in a sandbox of its own (services.devtools.sandbox: a database and a topic
prefix, as the integration tests have) and removes both when it ends. Figures are from one run on this machine: compare
them across commits on one machine, not across machines.

- `rates`: a timed count of events and peak memory, the units every figure is given in;
- `workload`: generated jobs, and sending them to Kafka as raw bytes;
- `ingest`, `ledger`, `keycheck`, `stripe_requests`: one bench each (`jobmeter bench ingest|ledger|keys|stripe`).
"""
