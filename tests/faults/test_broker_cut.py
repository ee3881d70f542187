"""The broker cut off from every koe process for a while, as by a network partition,
while citizens keep answering: the API keeps accepting (it never talks to Kafka), and
once the network heals every accepted response is counted exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from faults.stream import Citizens, counted, tally, wait_until_counted, wait_until_ready
from faults.tcp_proxy import TcpProxy
from koe_kit.local_broker import LocalBroker, free_port
from koe_kit.testing import wait_until

pytestmark = pytest.mark.e2e

CUT_S = 10


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


def test_a_broker_cut_mid_stream_loses_and_doubles_nothing(koe_factory, proxy, figures):
    koe = koe_factory(KOE_BATCH_MAX_MESSAGES="25")
    wait_until_ready(koe)
    citizens = Citizens(koe, pause_s=0.005).start()
    wait_until(lambda: counted(koe) >= 100, what="the stream flowing into the stats")

    proxy.cut()  # relay, aggregator and notifier all lose the broker at once
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

    assert set(citizens.statuses) == {202}, f"the API answered {citizens.statuses}"
    assert citizens.hangs == 0
    wait_until_counted(koe, citizens)
    result = tally(koe, citizens)
    assert result.wrong == []
    assert koe.stack.dead() == [], "a koe process died of the cut"
    figures(
        fault=f"broker cut off (network partition) for {CUT_S} s",
        in_flight=during_cut,
        lost=result.lost,
        doubled=result.doubled,
    )
