"""The fault tests' TCP proxy does what a partition does: open connections break, new
ones get no answer, and after healing traffic flows again."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from faults.tcp_proxy import TcpProxy

# A proxy and an echo server on real ports (tests/kinds.py).
pytestmark = pytest.mark.integration


class Echo(socketserver.BaseRequestHandler):
    received: list[bytes] = []  # everything any connection sent, in order

    def handle(self) -> None:
        while data := self.request.recv(1024):
            self.received.append(data)
            self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Echo.received = []
    proxy = TcpProxy("127.0.0.1", server.server_address[1]).start()
    yield proxy
    proxy.stop()
    server.shutdown()
    server.server_close()


def dial(proxy: TcpProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=2)


def echoes(sock: socket.socket) -> bool:
    sock.sendall(b"koe")
    return sock.recv(1024) == b"koe"


def test_a_cut_breaks_open_connections_silences_new_ones_and_heals(proxy):
    with dial(proxy) as before:
        assert echoes(before)
        proxy.cut()
        with pytest.raises(OSError):  # reset, not a quiet end
            before.sendall(b"koe")
            assert before.recv(1024) == b""

    with dial(proxy) as during:  # the attempt is not refused ...
        during.sendall(b"koe")
        with pytest.raises(TimeoutError):  # ... it is never answered
            during.recv(1024)
        proxy.heal()
        with pytest.raises(OSError):
            assert during.recv(1024) == b""

    with dial(proxy) as after:
        assert echoes(after)


def test_lost_answers_let_requests_through_and_drop_what_comes_back(proxy):
    with dial(proxy) as before:
        assert echoes(before)
        proxy.lose_answers()
        before.sendall(b"once")
        with dial(proxy) as during:  # a new connection is relayed too, one way
            during.sendall(b"twice")
            with pytest.raises(TimeoutError):
                during.recv(1024)
            with pytest.raises(TimeoutError):
                before.recv(1024)
            # The target did the work it was asked to do.
            assert b"once" in Echo.received and b"twice" in Echo.received
            proxy.heal()
            for broken in (before, during):  # each lost bytes mid-stream: reset
                with pytest.raises(OSError):
                    assert broken.recv(1024) == b""

    with dial(proxy) as after:
        assert echoes(after)
