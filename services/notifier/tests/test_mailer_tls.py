"""Mail over TLS to a real SMTP server that asks for it, with a login: implicit TLS
(SMTP_TLS, port 465's way) and STARTTLS (port 587's), the server's certificate checked
against the city's CA (SMTP_CAFILE). A server with a certificate of another CA gets no
mail and no password."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from koe_devkit.smtp_sink import SmtpSink
from koe_devkit.testing import issue_certificate, make_ca
from koe_kit.config import ConfigError
from notifier.config import load_settings
from notifier.mailer import SmtpMailer, TransientMailError

DIVISIONS = str(Path(__file__).resolve().parents[3] / "divisions.yaml")
LOGIN = ("koe", "a-long-enough-smtp-password")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> tuple[ssl.SSLContext, Path, Path]:
    """(the server's TLS context, the CA that signed it, a CA that did not)."""
    folder = tmp_path_factory.mktemp("smtp-tls")
    ca = make_ca(folder, "city-ca")
    stranger, _ = make_ca(folder, "other-ca")
    cert, key = issue_certificate(folder, ca, "mail", "IP:127.0.0.1")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ca[0], stranger


@pytest.fixture(params=["implicit", "starttls"])
def tls_server(request, certificates) -> Iterator[tuple[SmtpSink, str]]:
    """A server speaking TLS one way or the other; (it, the variable that says so)."""
    context = certificates[0]
    if request.param == "implicit":
        sink = SmtpSink(implicit_tls=context, login=LOGIN).start()
    else:
        sink = SmtpSink(starttls=context, login=LOGIN).start()
    yield sink, {"implicit": "SMTP_TLS", "starttls": "SMTP_STARTTLS"}[request.param]
    sink.stop()


def mailer(sink: SmtpSink, **env: str) -> SmtpMailer:
    settings = load_settings(
        {
            "KOE_DIVISIONS_FILE": DIVISIONS,
            "SMTP_HOST": sink.host,
            "SMTP_PORT": str(sink.port),
            "SMTP_USERNAME": LOGIN[0],
            "SMTP_PASSWORD": LOGIN[1],
            "KOE_SMTP_TIMEOUT_S": "5",
            **env,
        }
    )
    return SmtpMailer(settings.smtp)


def message() -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "koe@city.example", "dx@city.example", "テスト"
    mail.set_content("本文")
    return mail


@pytest.mark.integration
def test_mail_goes_over_tls_with_a_login_checked_against_the_citys_ca(tls_server, certificates):
    sink, variable = tls_server
    _, ca, stranger = certificates

    mailer(sink, **{variable: "true", "SMTP_CAFILE": str(ca)}).send(message())
    assert [m["Subject"] for m in sink.messages] == ["テスト"]

    # A certificate the city's CA did not sign: no password sent, no mail, retried later.
    with pytest.raises(TransientMailError, match="CERTIFICATE_VERIFY_FAILED"):
        mailer(sink, **{variable: "true", "SMTP_CAFILE": str(stranger)}).send(message())
    # Without TLS the server takes nothing (and never sees the password in the clear).
    with pytest.raises(TransientMailError):
        mailer(sink).send(message())
    assert len(sink.messages) == 1


def test_implicit_tls_and_starttls_are_one_or_the_other():
    with pytest.raises(ConfigError, match="SMTP_TLS and SMTP_STARTTLS"):
        load_settings({"KOE_DIVISIONS_FILE": DIVISIONS, "SMTP_TLS": "1", "SMTP_STARTTLS": "1"})
    with pytest.raises(ConfigError, match="SMTP_CAFILE"):
        load_settings({"KOE_DIVISIONS_FILE": DIVISIONS, "SMTP_CAFILE": "/nowhere/ca.pem"})
