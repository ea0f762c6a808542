"""Outgoing webhooks: endpoints per account and the delivery outbox, folded from the events that map to webhook
types (`types.py`); `services.webhooks` signs and sends what the fold recorded."""
