"""What the confluent-kafka client adds beyond the Kafka tests both clients run
(tests/connectors/test_kafka.py): librdkafka's names for the settings, and grouping."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.confluent import fetch_config, security_config
from connectors.kafka import KafkaConsumerSettings, KafkaSecurity
from connectors.stream import Record, TopicPartition, by_partition
from connectors.tls import TlsFileError
from tests.pki import make_pki


def test_sasl_ssl_maps_onto_librdkafka_names(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    security = KafkaSecurity(
        "SASL_SSL",
        "SCRAM-SHA-512",
        "monitord",
        "s3cret",
        ssl_cafile=str(pki.ca),
        ssl_check_hostname=False,
    )
    assert security_config(security) == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "monitord",
        "sasl.password": "s3cret",
        "ssl.ca.location": str(pki.ca),
        "ssl.endpoint.identification.algorithm": "none",
    }


def test_plaintext_sets_no_tls_nor_sasl() -> None:
    assert security_config(KafkaSecurity()) == {"security.protocol": "plaintext"}


def test_an_unusable_ca_file_is_refused_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(TlsFileError) as refused:
        security_config(KafkaSecurity("SSL", ssl_cafile=str(missing)))
    assert refused.value.parameter == "ca_file"  # preflight names it kafka.ssl_cafile
    assert str(missing) in str(refused.value)


def record(topic: str, partition: int, offset: int) -> Record:
    return Record(topic, partition, offset, None, b"v", 0)


def test_records_are_grouped_by_partition_in_offset_order() -> None:
    # librdkafka interleaves runs of partitions; a partition may come back in a later run.
    records = [
        record("a", 0, 5),
        record("a", 0, 6),
        record("a", 1, 0),
        record("b", 0, 9),
        record("a", 0, 7),
    ]
    grouped = by_partition(records)
    assert {tp: [r.offset for r in rs] for tp, rs in grouped.items()} == {
        TopicPartition("a", 0): [5, 6, 7],
        TopicPartition("a", 1): [0],
        TopicPartition("b", 0): [9],
    }
    assert by_partition([]) == {}


def test_the_fetcher_backs_off_briefly_once_its_queue_was_full() -> None:
    """librdkafka's default (1000 ms) made the next fetch wait up to a second after a poll
    drained a full queue; 0 would check a full queue in a busy loop."""
    settings = KafkaConsumerSettings(fetch_max_wait_ms=100, fetch_max_bytes=1 << 20)
    config = fetch_config(settings)
    assert 0 < config["fetch.queue.backoff.ms"] <= settings.fetch_max_wait_ms
    assert config["fetch.wait.max.ms"] == 100
    assert config["receive.message.max.bytes"] >= settings.fetch_max_bytes + 512
