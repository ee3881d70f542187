"""A real SMTP server that keeps every mail: the local sink for `make run` and
the tests' mail server. Each message is saved as an .eml file.

`fail_with` makes it answer every DATA with an SMTP error (e.g. "451 4.3.0 try
later" or "550 5.1.1 no such user"), so tests can fail the mail server without
mocking the client. `quit_with` makes it answer QUIT with one, after it has taken
the mail (a server shutting down may say 421 to any command). `hold_reply` holds
back the answer to one mail, kept or not, so a test can kill the client while it
waits; `stop()` and `start()` take the server away and back on the same port. It can
speak TLS (implicit or STARTTLS) and ask for a login, as a city's mail server does.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult


@dataclass
class HeldReply:
    """The answer to one mail, held back until `release()`. With `keep` the server has
    kept the mail before it holds the "250" (the client cannot know yet that it went
    out); without, it has not kept it and answers "451" once released."""

    after: int  # held: the first mail to arrive once this many are kept
    keep: bool
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()

    async def wait(self) -> None:
        self.arrived.set()
        while not self.released.is_set():
            await asyncio.sleep(0.02)


class _KeepEverything:
    def __init__(self, directory: Path | None):
        self.directory = directory
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.fail_with: str | None = None
        self.quit_with: str | None = None
        self.hold: HeldReply | None = None
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.fail_with:
            return self.fail_with
        hold = self._take_hold()
        if hold and not hold.keep:
            await hold.wait()
            return "451 4.3.0 not kept"
        self._keep(envelope)
        if hold:
            await hold.wait()
        return "250 2.0.0 kept"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        return self.quit_with or "221 Bye"

    def _take_hold(self) -> HeldReply | None:
        with self.lock:
            hold = self.hold
            if hold is None or len(self.messages) < hold.after:
                return None
            self.hold = None
            return hold

    def _keep(self, envelope: Any) -> None:
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if self.directory:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            (self.directory / f"{stamp}-{uuid.uuid4().hex[:8]}.eml").write_bytes(raw)


class SmtpSink:
    """The server. `implicit_tls` (port 465's way: TLS from the first byte) or `starttls`
    (a plain connection that must say STARTTLS before anything else) take the server's
    TLS context; `login` (user, password) makes it refuse mail until AUTH with them."""

    def __init__(
        self,
        port: int = 0,
        directory: Path | None = None,
        host: str = "127.0.0.1",
        *,
        implicit_tls: ssl.SSLContext | None = None,
        starttls: ssl.SSLContext | None = None,
        login: tuple[str, str] | None = None,
    ):
        if directory:
            directory.mkdir(parents=True, exist_ok=True)
        self.handler = _KeepEverything(directory)
        self.options: dict[str, Any] = {"ssl_context": implicit_tls}
        if starttls:
            self.options |= {"tls_context": starttls, "require_starttls": True}
        if login:
            self.options |= {"auth_required": True, "authenticator": _Authenticator(*login)}
        self.controller = self._controller(host, port or _free_port())
        self.running = False

    def _controller(self, host: str, port: int) -> Controller:
        return _Controller(self.handler, hostname=host, port=port, **self.options)

    @property
    def host(self) -> str:
        return self.controller.hostname

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def messages(self) -> list[EmailMessage]:
        with self.handler.lock:
            return list(self.handler.messages)

    def fail_with(self, reply: str | None) -> None:
        self.handler.fail_with = reply

    def quit_with(self, reply: str | None) -> None:
        self.handler.quit_with = reply

    def hold_reply(self, after: int, *, keep: bool) -> HeldReply:
        """Hold the answer to the first mail that arrives once `after` mails are kept."""
        self.handler.hold = HeldReply(after, keep)
        return self.handler.hold

    def start(self) -> SmtpSink:
        if self.controller.loop.is_closed():
            # A stopped controller has closed its event loop: come back on the same
            # port with a new one, keeping the mail received so far.
            self.controller = self._controller(self.host, self.port)
        self.controller.start()
        self.running = True
        return self

    def stop(self) -> None:
        if self.running:
            self.controller.stop()
            self.running = False


class _Controller(Controller):
    def factory(self) -> SMTP:
        server = super().factory()
        if self.ssl_context is not None:
            # aiosmtpd 1.4 counts only STARTTLS as TLS and would not offer AUTH on an
            # implicit TLS connection, which is TLS throughout (asking for that in its
            # constructor instead warns that AUTH goes unencrypted).
            server._auth_require_tls = False
        return server


class _Authenticator:
    """AUTH PLAIN/LOGIN with one user name and password (aiosmtpd's authenticator)."""

    def __init__(self, user: str, password: str):
        self.login = (user.encode(), password.encode())

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        given = (getattr(data, "login", None), getattr(data, "password", None))
        return AuthResult(success=given == self.login)


def _free_port() -> int:
    from koe_devkit.local_broker import free_port

    return free_port()


def main() -> None:
    parser = argparse.ArgumentParser(description="koe's local SMTP sink: keeps every mail")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, default=Path("var/mail"))
    args = parser.parse_args()
    sink = SmtpSink(args.port, args.dir).start()
    print(f"koe: SMTP sink on 127.0.0.1:{sink.port}, mail kept in {args.dir}/", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
