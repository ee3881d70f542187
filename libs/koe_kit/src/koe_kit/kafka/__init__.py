"""Kafka transport for koe, in parts (kafka-python underneath):

- settings:     KafkaSettings, read from the environment once;
- producer:     make_producer / close_producer;
- admin:        wait_for_kafka, ensure_topics, read_topic (no group, no commits);
- messages:     Message, the handler's input, and the Decoder that makes it;
- batch:        a batch's messages and offsets, and when it is full (pure);
- dead_letters: DeadLetterPolicy, given to the loop and to a handler that needs it;
- retry:        Retryable and what a handler's failure means (pure);
- loop:         ConsumerLoop, which wires these to a consumer group member.

The names below are the ones services, tests and tools import from koe_kit.kafka.
"""

from koe_kit.kafka.admin import ensure_topics, read_topic, wait_for_kafka
from koe_kit.kafka.dead_letters import DeadLetterPolicy, DeadLetters
from koe_kit.kafka.loop import ConsumerLoop
from koe_kit.kafka.messages import Handler, Message
from koe_kit.kafka.producer import close_producer, make_producer
from koe_kit.kafka.retry import Retryable
from koe_kit.kafka.settings import KafkaSettings

__all__ = [
    "ConsumerLoop",
    "DeadLetterPolicy",
    "DeadLetters",
    "Handler",
    "KafkaSettings",
    "Message",
    "Retryable",
    "close_producer",
    "ensure_topics",
    "make_producer",
    "read_topic",
    "wait_for_kafka",
]
