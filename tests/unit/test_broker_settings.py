"""Broker nodes in the configuration: one URL or several, checked at start-up with errors that
say what to write instead."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from schema.errors import ConfigError
from schema.settings import BROKER_URL_ENV, NodeOrder, load_settings
from schema.topology import Topology

if TYPE_CHECKING:
    from pathlib import Path

    from schema.settings import BrokerSettings

NODE_A = "amqp://payouts:secret-a@rabbit-1:5672/"
NODE_B = "amqp://payouts:secret-b@rabbit-2:5672/"


def load_settings_broker(
    tmp_path: Path, broker: str, environ: dict[str, str] | None = None
) -> BrokerSettings:
    path = tmp_path / "payouts.toml"
    path.write_text(f"[broker]\n{broker}\n")
    return load_settings(path, environ={} if environ is None else environ).broker


def test_one_url_is_a_list_of_one_node(tmp_path: Path) -> None:
    broker = load_settings_broker(tmp_path, f'url = "{NODE_A}"')
    assert broker.urls == (NODE_A,)


def test_several_urls_keep_their_order_and_are_shuffled_by_default(tmp_path: Path) -> None:
    broker = load_settings_broker(tmp_path, f'urls = ["{NODE_A}", "{NODE_B}"]')
    assert (broker.urls, broker.node_order) == ((NODE_A, NODE_B), NodeOrder.SHUFFLED)


def test_the_environment_variable_takes_nodes_separated_by_commas(tmp_path: Path) -> None:
    environ = {BROKER_URL_ENV: f"{NODE_A}, {NODE_B}"}
    broker = load_settings_broker(tmp_path, 'url = "amqp://file-node/"', environ)
    assert broker.urls == (NODE_A, NODE_B)


@pytest.mark.parametrize(
    ("broker", "message"),
    [
        (f'url = "{NODE_A}"\nurls = ["{NODE_B}"]', "either url .* or urls .*, not both"),
        ("urls = []", r"broker\.urls: .*list at least one node"),
        ('urls = ["http://rabbit-1:5672/"]', r"broker\.urls\[0\]: .*not an AMQP URL"),
        ('urls = ["amqp:///"]', r"not an AMQP URL; write amqp://user:password@host"),
        ('urls = ["amqp://rabbit-1:port/"]', "the port is not a number"),
        (
            f'urls = ["{NODE_A}", "amqp://other:pw@rabbit-1/"]',
            "rabbit-1:5672 is listed twice",
        ),
        ('node_order = "random"', r"broker\.node_order"),
        ("quorum_initial_group_size = -1", r"broker\.quorum_initial_group_size"),
        (
            "reconnect_interval_seconds = 10\nreconnect_max_interval_seconds = 5",
            "at least reconnect_interval_seconds",
        ),
    ],
)
def test_broker_nodes_are_checked_at_start_up(tmp_path: Path, broker: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings_broker(tmp_path, broker)


def test_a_refused_url_is_shown_without_its_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings_broker(tmp_path, 'urls = ["http://payouts:hunter2@rabbit-1/"]')
    assert "hunter2" not in str(refused.value)


def test_quorum_queues_are_declared_with_the_initial_group_size(tmp_path: Path) -> None:
    broker = load_settings_broker(tmp_path, "quorum_initial_group_size = 5")
    topology = Topology.from_settings(broker)
    assert topology.work_queue_arguments()["x-quorum-initial-group-size"] == 5
    assert topology.retry_queue_arguments(5)["x-quorum-initial-group-size"] == 5


def test_a_group_size_of_zero_declares_queues_as_before_the_setting(tmp_path: Path) -> None:
    broker = load_settings_broker(tmp_path, "quorum_initial_group_size = 0")
    topology = Topology.from_settings(broker)
    assert "x-quorum-initial-group-size" not in topology.work_queue_arguments()
    assert topology.work_queue_arguments()["x-queue-type"] == "quorum"
