"""gunicorn under koe's configuration: its own log lines are JSON like the apps', and
keep no client's full address."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from koe_devkit.local_broker import free_port, wait_for_port

CLIENT = "127.0.0.77"


@pytest.mark.integration
def test_gunicorn_logs_its_own_lines_as_json(tmp_path: Path):
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "__init__.py").write_text("")
    (tmp_path / "tiny" / "wsgi.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n"
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:koe_kit.gunicorn_conf",
         "--chdir", str(tmp_path), "--bind", f"127.0.0.1:{port}", "tiny.wsgi:app"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, timeout_s=30)
        # A request line gunicorn refuses itself, from a client address of our choosing:
        # gunicorn logs who sent it, and the log must not keep a citizen's address.
        with socket.create_connection(("127.0.0.1", port), source_address=(CLIENT, 0)) as conn:
            conn.sendall(b"BR\x00KEN / HTTP/1.1\r\n\r\n")
            conn.recv(1024)
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    messages = [line["message"] for line in lines]
    assert any(m.startswith("Listening at") for m in messages), messages
    assert any(m.startswith("Booting worker") for m in messages), messages
    assert {line["service"] for line in lines} == {"tiny"}
    assert any(m.startswith("Invalid request from ip=127.0.0.0/24") for m in messages), messages
    assert CLIENT not in stderr
    assert server.returncode == 0
