"""The operator console: server-rendered pages over the projections, and a few guarded actions."""
