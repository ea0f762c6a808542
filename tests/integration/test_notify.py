"""The notifier against a real SMTP conversation (a tiny local SMTP sink, named as such) and real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import message_from_bytes
from email.message import EmailMessage

import pytest
from pydantic import SecretStr

from jobmeter.settings import Settings
from projections.migrate import migrate
from projections.payg.projection import PaygBalances
from services.keys.notify import notify_once
from services.payg.recharger import Recharger
from services.platform.mail import SmtpMailer, mailer_for
from services.platform.resources import open_resources
from services.stripe_adapter.client import make_client

pytestmark = pytest.mark.integration


@asynccontextmanager
async def smtp_sink(refuse: bool = False) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A local fake SMTP server (this test's only): accepts or refuses every message, keeps what it accepted."""
    received: list[bytes] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-sink\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                data = b""
                while (chunk := await reader.readline()) != b".\r\n":
                    data += chunk
                if refuse:
                    writer.write(b"554 no thanks\r\n")
                else:
                    received.append(data)
                    writer.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, received
    finally:
        server.close()
        await server.wait_closed()


async def add_notification(conn: object, kind: str, recipient: str | None) -> None:
    await conn.execute(  # type: ignore[attr-defined]
        """INSERT INTO key_lifecycle.notifications (notification_id, account_id, customer_id, kind, reason, recipient)
           VALUES ($1, 'acme', 'cus_ACME', $2, 'payment failed', $3)""",
        uuid.uuid4(), kind, recipient,
    )


async def test_notifications_are_sent_over_smtp_and_marked_sent_once(settings: Settings) -> None:
    async with open_resources(settings, producer="test") as res, smtp_sink() as (port, received):
        async with res.pool.acquire() as conn:
            await add_notification(conn, "suspended", "ops@acme.example")
            await add_notification(conn, "restored", None)
        mailer = SmtpMailer(f"smtp://127.0.0.1:{port}")
        assert await notify_once(res.pool, "key_lifecycle", mailer, "billing@jobmeter.test") == (2, 0)
        assert await notify_once(res.pool, "key_lifecycle", mailer, "billing@jobmeter.test") == (0, 0)
        async with res.pool.acquire() as conn:
            unsent = await conn.fetchval("SELECT count(*) FROM key_lifecycle.notifications WHERE sent_at IS NULL")
        assert unsent == 0
    messages = [message_from_bytes(m) for m in received]
    assert [m["To"] for m in messages] == ["ops@acme.example", "billing@jobmeter.test"]
    assert "suspended" in messages[0]["Subject"] and messages[0]["Message-ID"].endswith("@jobmeter>")


async def test_a_refused_message_stays_unsent_and_is_retried(settings: Settings) -> None:
    async with open_resources(settings, producer="test") as res:
        async with res.pool.acquire() as conn:
            await add_notification(conn, "suspended", "ops@acme.example")
        async with smtp_sink(refuse=True) as (port, _):
            refused = await notify_once(res.pool, "key_lifecycle", SmtpMailer(f"smtp://127.0.0.1:{port}"), "b@j.test")
        assert refused == (0, 1)
        async with res.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT attempts, last_error, sent_at FROM key_lifecycle.notifications")
        assert (row["attempts"], row["sent_at"]) == (1, None) and "no thanks" in row["last_error"]
        async with smtp_sink() as (port, received):
            retried = await notify_once(res.pool, "key_lifecycle", SmtpMailer(f"smtp://127.0.0.1:{port}"), "b@j.test")
        assert retried == (1, 0)
        assert len(received) == 1


class ProcessDied(BaseException):
    """Stands for the process being killed: not an Exception, so nothing on the way catches it."""


class DiesOnTheSecond:
    """A mailer whose process dies while sending its second message; the first goes through the real one."""

    def __init__(self, real: SmtpMailer) -> None:
        self.real = real
        self.calls = 0

    async def send(self, message: EmailMessage) -> None:
        self.calls += 1
        if self.calls == 2:
            raise ProcessDied
        await self.real.send(message)


async def test_a_message_sent_is_marked_at_once_so_a_notifier_dying_later_sends_it_once(settings: Settings) -> None:
    """Sent with no transaction open and marked in one of its own: dying on the second message cannot undo the
    first one's mark, and the message being sent when it died waits for its lease, then goes once."""
    async with open_resources(settings, producer="test") as res, smtp_sink() as (port, received):
        async with res.pool.acquire() as conn:
            await add_notification(conn, "suspended", "ops@acme.example")
            await add_notification(conn, "restored", "ops@acme.example")
        real = SmtpMailer(f"smtp://127.0.0.1:{port}")

        with pytest.raises(ProcessDied):
            await notify_once(res.pool, "key_lifecycle", DiesOnTheSecond(real), "b@j.test")
        async with res.pool.acquire() as conn:
            marked = await conn.fetch("SELECT kind, sent_at FROM key_lifecycle.notifications ORDER BY id")
        assert [(r["kind"], r["sent_at"] is not None) for r in marked] == [("suspended", True), ("restored", False)]
        # The second is still leased to the dead notifier; once its lease has run out it goes, once.
        assert await notify_once(res.pool, "key_lifecycle", real, "b@j.test") == (0, 0)
        async with res.pool.acquire() as conn:
            await conn.execute("UPDATE key_lifecycle.notifications SET claimed_until = now() - interval '1 second'")
        assert await notify_once(res.pool, "key_lifecycle", real, "b@j.test") == (1, 0)
    subjects = [message_from_bytes(m)["Subject"] for m in received]
    assert len(subjects) == 2 and "suspended" in subjects[0] and "work again" in subjects[1]


def test_without_an_smtp_url_messages_go_to_the_log(settings: Settings) -> None:
    assert type(mailer_for(settings)).__name__ == "LogMailer"
    with_smtp = settings.model_copy(update={"jobmeter_smtp_url": SecretStr("smtp://u:p%40ss@mail.example:2525")})
    mailer = mailer_for(with_smtp)
    assert isinstance(mailer, SmtpMailer)
    assert (mailer.host, mailer.port, mailer.password) == ("mail.example", 2525, "p@ss")


async def test_payg_notices_are_marked_one_by_one_so_a_recharger_dying_later_sends_each_once(
    settings: Settings,
) -> None:
    """The same for the recharger's notices (a failed recharge): marked in a transaction of their own."""
    await migrate(settings.database_url, PaygBalances.schema, PaygBalances.migrations)
    async with open_resources(settings, producer="test") as res, smtp_sink() as (port, received):
        async with res.pool.acquire() as conn:
            for n in (1, 2):
                await conn.execute(
                    """INSERT INTO payg.notifications (notification_id, account_id, kind, amount_minor, currency,
                                                       detail, created_at, pay_url)
                       VALUES ($1, 'acme', 'recharge_failed', 2000, 'usd', 'card declined', now(), $2)""",
                    f"n{n}", f"https://pay.example/{n}",
                )
        real = SmtpMailer(f"smtp://127.0.0.1:{port}")

        dying = Recharger(res.pool, make_client(settings), settings, mailer=DiesOnTheSecond(real))
        with pytest.raises(ProcessDied):
            await dying.send_notifications()
        async with res.pool.acquire() as conn:
            marked = await conn.fetch("SELECT notification_id, sent_at FROM payg.notifications ORDER BY created_at")
        assert [(r["notification_id"], r["sent_at"] is not None) for r in marked] == [("n1", True), ("n2", False)]
        again = Recharger(res.pool, make_client(settings), settings, mailer=real)
        assert await again.send_notifications() == 0  # n2 is still leased to the dead recharger
        async with res.pool.acquire() as conn:
            await conn.execute("UPDATE payg.notifications SET claimed_until = now() - interval '1 second'")
        assert await again.send_notifications() == 1
    assert len(received) == 2
