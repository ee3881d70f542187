"""`make run` refuses to start when another program already listens on a port it would
start something on, instead of quietly sending koe's events or mail to that program."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from koe_devkit.local_broker import free_port


@pytest.mark.integration
def test_a_foreign_server_on_a_port_of_make_run_stops_it_naming_the_variable(tmp_path: Path):
    listeners = []
    ports = {}
    for name in ("KOE_BROKER_PORT", "SMTP_PORT", "KOE_AGGREGATOR_PORT"):
        # Another program's server, say a broker or mail catcher left from other work.
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        ports[name] = str(listener.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOE_", "KAFKA_", "SMTP_"))}
    env |= ports | {
        "KOE_VAR_DIR": str(tmp_path / "var"),
        "KOE_FEEDBACK_PORT": str(free_port()),
        "KOE_NOTIFIER_PORT": str(free_port()),
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "koe_devkit.local_stack"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        for listener in listeners:
            listener.close()
    assert done.returncode != 0
    for name, port in ports.items():
        assert f"{name}={port}" in done.stderr, done.stderr
    assert "KAFKA_BOOTSTRAP_SERVERS" in done.stderr  # how to use that broker on purpose
    assert "Traceback" not in done.stderr
    # Nothing was started: no log of any process, no database.
    assert not list((tmp_path / "var").glob("log/*.log"))
    assert not list((tmp_path / "var").glob("*.db"))
