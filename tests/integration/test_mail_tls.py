"""Notification mail only over verified TLS, against real SMTP servers (aiosmtpd) with certificates from a test CA
(trustme): implicit TLS and STARTTLS deliver; a server without STARTTLS never sees the password; an untrusted
certificate or one for another host gets nothing."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from jobmeter.settings import Settings
from services.keys.notify import notify_once
from services.platform.mail import InsecureServer, SmtpMailer, mailer_for
from services.platform.resources import open_resources
from services.platform.serving import free_port

pytestmark = [
    pytest.mark.integration,
    # aiosmtpd warns when AUTH is required without its STARTTLS: our implicit-TLS server is encrypted from the start.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

PASSWORD = "s3cret-pa55"  # the test server's


@dataclass
class Recorder:
    """What the server saw: each AUTH (login, password, over TLS?) and each message accepted."""

    auths: list[tuple[str, str, bool]] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        over_tls = server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
        self.auths.append((auth_data.login.decode(), auth_data.password.decode(), over_tls))
        return AuthResult(success=auth_data.password.decode() == PASSWORD)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(envelope.content)
        return "250 OK"


@dataclass(frozen=True)
class Pki:
    ca: trustme.CA
    ca_file: Path

    def server_context(self, *names: str) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*names).configure_cert(context)
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Pki(ca, ca_file)


@contextmanager
def smtp_server(*, implicit: ssl.SSLContext | None = None, starttls: ssl.SSLContext | None = None,
                plain_auth: bool = False) -> Iterator[tuple[int, Recorder]]:
    """A real SMTP server on a loopback port: TLS from the start (`implicit`), STARTTLS offered (and required,
    `starttls`), or neither. With TLS it takes mail only after AUTH; `plain_auth` makes it offer and take AUTH
    over plain text, so a client that would send the password in clear does."""
    recorder = Recorder()
    port = free_port()
    controller = Controller(
        recorder, hostname="127.0.0.1", port=port, ssl_context=implicit, tls_context=starttls,
        require_starttls=starttls is not None, authenticator=recorder.authenticate,
        # aiosmtpd's own TLS requirement knows STARTTLS only; an implicit-TLS connection is encrypted already.
        auth_require_tls=starttls is not None or (implicit is None and not plain_auth),
        auth_required=implicit is not None or starttls is not None,
    )
    controller.start()
    try:
        yield port, recorder
    finally:
        controller.stop()


def message() -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "billing@jobmeter.test", "ops@acme.example", "keys suspended"
    mail["Message-ID"] = f"<{uuid.uuid4()}@jobmeter>"
    mail.set_content("The API keys of account acme are suspended.\n")
    return mail


async def test_smtps_delivers_over_tls_checked_against_the_ca_file(pki: Pki) -> None:
    with smtp_server(implicit=pki.server_context("127.0.0.1", "localhost")) as (port, seen):
        configured = Settings(jobmeter_smtp_url=SecretStr(f"smtps://billing:{PASSWORD}@127.0.0.1:{port}"),
                              jobmeter_smtp_ca_file=pki.ca_file)
        await mailer_for(configured).send(message())  # the CA file setting reaches the mailer
    assert len(seen.messages) == 1 and b"keys suspended" in seen.messages[0]
    assert seen.auths == [("billing", PASSWORD, True)]


async def test_starttls_delivers_and_the_password_goes_only_over_tls(pki: Pki) -> None:
    with smtp_server(starttls=pki.server_context("localhost", "127.0.0.1")) as (port, seen):
        await SmtpMailer(f"smtp://billing:{PASSWORD}@localhost:{port}", ca_file=pki.ca_file).send(message())
    assert len(seen.messages) == 1
    assert seen.auths == [("billing", PASSWORD, True)]


async def test_without_starttls_a_password_is_never_sent(pki: Pki) -> None:
    # This server would take AUTH in clear; the mailer must not offer it the chance.
    with smtp_server(plain_auth=True) as (port, seen):
        mailer = SmtpMailer(f"smtp://billing:{PASSWORD}@127.0.0.1:{port}", ca_file=pki.ca_file)
        with pytest.raises(InsecureServer, match="does not offer STARTTLS"):
            await mailer.send(message())
    assert seen.auths == [] and seen.messages == []


async def test_a_refused_send_stays_unsent_and_goes_out_once_tls_is_there(settings: Settings, pki: Pki) -> None:
    async with open_resources(settings, producer="test") as res:
        async with res.pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO key_lifecycle.notifications (notification_id, account_id, customer_id, kind, reason,
                   recipient) VALUES ($1, 'acme', 'cus_ACME', 'suspended', 'payment failed', 'ops@acme.example')""",
                uuid.uuid4(),
            )
        with smtp_server(plain_auth=True) as (port, seen):
            plain = SmtpMailer(f"smtp://billing:{PASSWORD}@127.0.0.1:{port}", ca_file=pki.ca_file)
            assert await notify_once(res.pool, "key_lifecycle", plain, "billing@jobmeter.test") == (0, 1)
        assert seen.auths == [] and seen.messages == []
        async with res.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT attempts, last_error, sent_at FROM key_lifecycle.notifications")
        assert (row["attempts"], row["sent_at"]) == (1, None) and "STARTTLS" in row["last_error"]

        with smtp_server(starttls=pki.server_context("127.0.0.1")) as (port, seen):
            secure = SmtpMailer(f"smtp://billing:{PASSWORD}@127.0.0.1:{port}", ca_file=pki.ca_file)
            assert await notify_once(res.pool, "key_lifecycle", secure, "billing@jobmeter.test") == (1, 0)
        assert len(seen.messages) == 1 and seen.auths == [("billing", PASSWORD, True)]


@pytest.mark.parametrize("scheme", ["smtps", "smtp"])
async def test_a_certificate_from_an_untrusted_ca_is_refused(pki: Pki, scheme: str) -> None:
    context = pki.server_context("127.0.0.1")
    implicit, starttls = (context, None) if scheme == "smtps" else (None, context)
    with smtp_server(implicit=implicit, starttls=starttls) as (port, seen):
        # No CA file: the system's store, which does not hold the test CA.
        mailer = SmtpMailer(f"{scheme}://billing:{PASSWORD}@127.0.0.1:{port}")
        with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
            await mailer.send(message())
    assert seen.auths == [] and seen.messages == []


@pytest.mark.parametrize("scheme", ["smtps", "smtp"])
async def test_a_certificate_for_another_host_is_refused(pki: Pki, scheme: str) -> None:
    context = pki.server_context("mail.example.test")  # trusted CA, but not issued for 127.0.0.1
    implicit, starttls = (context, None) if scheme == "smtps" else (None, context)
    with smtp_server(implicit=implicit, starttls=starttls) as (port, seen):
        mailer = SmtpMailer(f"{scheme}://billing:{PASSWORD}@127.0.0.1:{port}", ca_file=pki.ca_file)
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            await mailer.send(message())
    assert seen.auths == [] and seen.messages == []


async def test_no_credentials_and_no_starttls_is_a_local_relay(pki: Pki) -> None:
    with smtp_server() as (port, seen):
        await SmtpMailer(f"smtp://127.0.0.1:{port}", ca_file=pki.ca_file).send(message())
    assert len(seen.messages) == 1 and seen.auths == []
