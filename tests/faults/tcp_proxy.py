"""A loopback TCP proxy the fault tests put between koe and the broker or a database,
and then cut off and heal, like a network partition.

What `cut()` does, and why: a partition drops packets, it does not answer them. So a
connection attempt during the cut gets no answer at all (not a refusal: a refusal
would let clients fail fast, which a partition never does); the proxy accepts it
and stays silent, so the client's own timeouts are what end the wait. Connections
open at the cut are dropped at once, with a reset: in a real partition the
endpoints' TCP stacks give up on them after their retransmission or user timeouts,
but through a proxy they never would (the proxy's kernel acknowledges every byte),
so the proxy gives up for them. `heal()` resets the connections held silent during
the cut (their attempts are as good as lost) and relays new ones again.

`lose_answers()` is the partition that hurts most: requests still reach the target,
its answers are lost on the way back. The target did the work (a broker appended the
records) but the client cannot know, so it times out and sends again: at-least-once
delivery made to happen, not left to the luck of a cut landing mid-request. `heal()`
resets every connection open then (each lost bytes mid-stream).

Given a server-side `tls` context it also terminates TLS, as a TLS listener (or a
load balancer) in front of Kafka does: clients speak TLS to the proxy, the proxy
plain TCP to the target (tests/test_kafka_tls.py).

asyncio in a thread of its own: one task per direction of each connection, nothing
polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import threading

CHUNK = 64 * 1024


class TcpProxy:
    def __init__(
        self,
        target_host: str,
        target_port: int,
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ):
        self.target = (target_host, target_port)
        self.host = host
        self.tls = tls
        self.port = 0  # known once started
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()  # every socket we hold, both sides
        self._healed = asyncio.Event()  # set while traffic flows
        self._answers_lost = False  # set while the target's answers are dropped
        self.connections = 0  # relayed to the target, for tests that want to know

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def cut(self) -> None:
        """From now on nothing passes; returns once every open connection is reset."""
        self._call(self._cut())

    def lose_answers(self) -> None:
        """From now on what clients send reaches the target; what it answers is dropped."""
        self._call(self._lose_answers())

    def heal(self) -> None:
        self._call(self._heal())

    def _call(self, coroutine) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _start(self) -> None:
        self._healed.set()
        self._server = await asyncio.start_server(self._accept, self.host, 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        self._reset_all()
        self._healed.set()  # held connections end too
        others = asyncio.all_tasks() - {asyncio.current_task()}
        await asyncio.gather(*others, return_exceptions=True)

    async def _cut(self) -> None:
        self._healed.clear()
        self._reset_all()

    async def _lose_answers(self) -> None:
        self._answers_lost = True

    async def _heal(self) -> None:
        if self._answers_lost:
            self._answers_lost = False
            self._reset_all()
        # Held connections wake up, see they came in during the cut, and reset.
        self._healed.set()

    def _reset_all(self) -> None:
        for writer in list(self._open):
            _reset(writer)
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        if not self._healed.is_set():
            # Silence, then a reset once the partition is over.
            await self._healed.wait()
            self._forget(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._forget(writer)  # the target is down: the client sees its connection die
            return
        if not self._healed.is_set() or writer not in self._open:
            # Cut while we were dialing.
            _reset(up_writer)
            self._forget(writer)
            return
        self._open.add(up_writer)
        self.connections += 1
        await asyncio.gather(
            self._pipe(reader, up_writer, writer),
            self._pipe(up_reader, writer, up_writer, answers=True),
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
        answers: bool = False,
    ) -> None:
        """Copy one direction until either side ends; then end the whole connection."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(CHUNK):
                if answers and self._answers_lost:
                    continue
                writer.write(data)
                await writer.drain()
        self._forget(writer)
        self._forget(other)

    def _forget(self, writer: asyncio.StreamWriter) -> None:
        if writer in self._open:
            self._open.discard(writer)
            _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN: the peer sees the connection broken, not finished."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
