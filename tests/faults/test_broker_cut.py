"""The broker cut off from every koe process for a while, as by a network partition,
while citizens keep answering: the API keeps accepting (it never talks to Kafka), and
once the network heals every accepted response is counted exactly once.

Twice: a clean cut, and one that loses only the broker's answers. A clean cut seldom
lands between the broker taking a batch and the relay hearing so, so nothing need be
sent twice and "counted once" may prove nothing there; with the answers lost the relay
publishes again what the broker already holds, every time, and the aggregator must
recognise it (asserted: the topic holds events twice)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from faults.stream import (
    Citizens,
    counted,
    counted_once,
    wait_until_ready,
)
from faults.tcp_proxy import TcpProxy
from koe_devkit.local_broker import LocalBroker, free_port
from koe_devkit.testing import wait_until
from koe_kit import events
from koe_kit.kafka import read_topic

pytestmark = pytest.mark.e2e

CUT_S = 10
FEEDBACK_TOPIC = "koe.feedback.submitted.v1"
FAULTS = {
    "cut": ("broker cut off (network partition)", TcpProxy.cut),
    "answers-lost": ("the broker's answers lost (one-way partition)", TcpProxy.lose_answers),
}


@pytest.fixture
def proxy(tmp_path) -> Iterator[TcpProxy]:
    """The only way to the broker; the broker's own port stays unknown to koe."""
    broker_port = free_port()
    proxy = TcpProxy("127.0.0.1", broker_port).start()
    # Tansu tells clients where to connect (metadata): the proxy, not itself.
    broker = LocalBroker(broker_port, tmp_path / "broker.log", advertised_port=proxy.port)
    proxy.broker = broker  # type: ignore[attr-defined]
    broker.start()
    yield proxy
    proxy.stop()
    broker.stop()


@pytest.fixture
def broker(proxy) -> LocalBroker:
    # koe_factory takes KAFKA_BOOTSTRAP_SERVERS from this fixture: the proxy's address.
    return proxy.broker


def published_twice(bootstrap: str) -> int:
    """Messages on the feedback topic that repeat an event already on it."""
    records = read_topic([bootstrap], FEEDBACK_TOPIC, timeout_s=60)
    return len(records) - len({events.decode(r.value)["id"] for r in records})


@pytest.mark.parametrize("fault", FAULTS)
def test_a_broker_cut_mid_stream_loses_and_doubles_nothing(koe_factory, proxy, figures, fault):
    description, break_the_network = FAULTS[fault]
    # The relay gives up on a send well within the cut (it waits 30 s by default): its
    # producer would otherwise retry the same batch under the same idempotent producer
    # id after the heal, which the broker recognises, and nothing would arrive twice.
    koe = koe_factory(KOE_BATCH_MAX_MESSAGES="25", KOE_RELAY_SEND_TIMEOUT_S="3")
    wait_until_ready(koe)
    citizens = Citizens(koe, pause_s=0.005).start()
    wait_until(lambda: counted(koe) >= 100, what="the stream flowing into the stats")

    break_the_network(proxy)  # relay, aggregator and notifier all lose the broker at once
    before_cut = citizens.total
    time.sleep(CUT_S)
    during_cut = citizens.total - before_cut
    counted_while_cut = counted(koe)
    proxy.heal()

    assert during_cut > 0, "the API must keep accepting while the broker is away"
    # Nothing accepted during the cut got through: the cut did cut, mid-stream.
    assert counted_while_cut <= before_cut < citizens.total
    # Keep answering after the heal, until the stats move past where the cut left them.
    wait_until(lambda: counted(koe) > before_cut, what="counting to resume after the heal")
    citizens.stop()

    result = counted_once(koe, citizens)
    assert koe.stack.dead() == [], "a koe process died of the cut"
    if fault == "answers-lost":
        assert published_twice(proxy.broker.bootstrap) > 0, "the relay must have sent again"
    figures(
        fault=f"{description} for {CUT_S} s",
        in_flight=during_cut,
        lost=result.lost,
        doubled=result.doubled,
    )
