"""Gathers what needs an operator (`services.engine.attention`) from every area: PAYG, the meter, outgoing webhooks
and alert emails, the dead-letter topic and the topics' replication. Reads only: through each area's queries, a
plain log reader and Kafka's admin describe calls. Shared by `jobmeter doctor` and the console's Attention page."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from events.topics import check_topics
from projections.db import has_table
from projections.meter import queries as meter_queries
from projections.payg import queries as payg_queries
from projections.webhooks import queries as webhook_queries
from services.engine import attention
from services.engine.attention import Bounds, Item, LetterCount
from services.platform.deadletters import all_dead_letters
from services.platform.resources import Resources


async def gather(res: Resources, now: datetime) -> list[Item]:
    """Everything not final past its bound, as of `now`; oldest first within each kind."""
    bounds = Bounds.of(res.settings)
    items: list[Item] = []
    # Each area's reads on its own database (JOBMETER_<NAME>_DATABASE_URL)
    async with res.pool_for("payg").acquire() as conn:
        if await has_table(conn, "payg.recharges"):
            rows = await payg_queries.recharges_requested_before(conn, now - bounds.recharge)
            items += attention.unsettled_recharges([dict(r) for r in rows], now, bounds.recharge)
            rows = await payg_queries.parked_jobs_per_account(conn)
            items += attention.parked_jobs("payg", [dict(r) for r in rows], now, bounds.parked)
            rows = await payg_queries.parked_topups(conn)
            items += attention.parked_topups([dict(r) for r in rows], now, bounds.parked)
    async with res.pool_for("meter").acquire() as conn:
        if await has_table(conn, "meter.reports"):
            rows = await meter_queries.unfinished_reports(conn, now - bounds.meter)
            items += attention.meter_reports([dict(r) for r in rows], now, bounds.meter)
            rows = await meter_queries.parked_jobs_per_account(conn)
            items += attention.parked_jobs("meter", [dict(r) for r in rows], now, bounds.parked)
    async with res.pool_for("webhooks").acquire() as conn:
        if await has_table(conn, "outgoing_webhooks.deliveries"):
            rows = await webhook_queries.failing(conn, now - bounds.webhook)
            items += attention.webhook_deliveries([dict(r) for r in rows], now, bounds.webhook)
        if await has_table(conn, "outgoing_webhooks.alert_mails"):
            rows = await webhook_queries.unsent_alert_mails(conn, now - bounds.mail)
            items += attention.alert_mails([dict(r) for r in rows], now, bounds.mail)
    items += attention.dead_letters(await count_dead_letters(res), now)
    s = res.settings
    report = await check_topics(s.kafka_bootstrap_servers, res.topics, replication_factor=s.jobmeter_replication_factor,
                                min_insync=s.jobmeter_min_insync_replicas)
    items += attention.under_replicated(report.below_factor, report.replication.factor, s.kafka_bootstrap_servers)
    return items


async def count_dead_letters(res: Resources) -> list[LetterCount]:
    """Dead letters per consumer not applied since by a redrive, the dead-letter topic read to its end as of now."""
    counts: dict[str, LetterCount] = {}
    for letter in await all_dead_letters(res.settings.kafka_bootstrap_servers, res.topics):
        if letter.settled:
            continue
        known = counts.get(letter.consumer)
        if known is None or letter.at >= known.newest_at:
            total = known.count + 1 if known else 1
            counts[letter.consumer] = LetterCount(letter.consumer, total, letter.at, letter.reason)
        else:
            counts[letter.consumer] = replace(known, count=known.count + 1)
    return list(counts.values())
