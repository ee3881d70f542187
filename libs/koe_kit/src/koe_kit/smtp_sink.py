"""A real SMTP server that keeps every mail: the local sink for `make run` and
the tests' mail server. Each message is saved as an .eml file.

`fail_with` makes it answer every DATA with an SMTP error (e.g. "451 4.3.0 try
later" or "550 5.1.1 no such user"), so tests can fail the mail server without
mocking the client.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import threading
import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class _KeepEverything:
    def __init__(self, directory: Path | None):
        self.directory = directory
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.fail_with: str | None = None
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.fail_with:
            return self.fail_with
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if self.directory:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            (self.directory / f"{stamp}-{uuid.uuid4().hex[:8]}.eml").write_bytes(raw)
        return "250 2.0.0 kept"


class SmtpSink:
    def __init__(self, port: int = 0, directory: Path | None = None, host: str = "127.0.0.1"):
        if directory:
            directory.mkdir(parents=True, exist_ok=True)
        self.handler = _KeepEverything(directory)
        self.controller = Controller(self.handler, hostname=host, port=port or _free_port())

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

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def _free_port() -> int:
    from koe_kit.local_broker import free_port

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
