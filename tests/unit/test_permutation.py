"""The permuted ring (facts brief §9.1), checked against the order the real Tahoe-LAFS 1.20 computes.

Vectors: ``tests/unit/data/permutation_vectors.json``, made by
``tests/unit/data/permutation_vectors_producer.py.txt`` with Tahoe's own StorageFarmBroker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lafs.client.storage_broker import StorageBroker, permutation_seed
from lafs.core import base32
from lafs.storage_client.foolscap import FoolscapConnector

VECTORS = json.loads((Path(__file__).parent / "data" / "permutation_vectors.json").read_text())
ORDERS = VECTORS["orders"]


def broker_with_connected_servers(preferred: tuple[str, ...] = ()) -> StorageBroker:
    broker = StorageBroker([FoolscapConnector(tub=None)], preferred_peers=preferred)
    for server in VECTORS["servers"]:
        broker.got_announcement(server["server_id"], server["ann"])
        handle = broker.get_server(server["server_id"])
        assert handle is not None
        handle.client = object()  # type: ignore[assignment]  # stands in for a live connection; the broker never started connecting
    return broker


@pytest.mark.parametrize("server", VECTORS["servers"], ids=lambda s: s["server_id"][:12])
def test_seed_matches_tahoe(server: dict[str, Any]) -> None:
    expected = base32.a2b(VECTORS["seeds_b32"][server["server_id"]])
    assert permutation_seed(server["server_id"], server["ann"]) == expected


def test_every_seed_source_is_covered() -> None:
    # announced seed (84 chars, decodes to the key's b32 text), key-based ID, SHA256 fallback
    lengths = {len(base32.a2b(seed)) for seed in VECTORS["seeds_b32"].values()}
    assert lengths == {52, 32}
    assert any(
        "permutation-seed-base32" not in s["ann"] and s["server_id"].startswith("v0-")
        for s in VECTORS["servers"]
    )
    assert any(not s["server_id"].startswith("v0-") for s in VECTORS["servers"])


@pytest.mark.parametrize("vector", ORDERS, ids=lambda v: v["storage_index_b32"])
def test_order_matches_tahoe(vector: dict[str, Any]) -> None:
    broker = broker_with_connected_servers()
    storage_index = base32.a2b(vector["storage_index_b32"])
    assert [h.server_id for h in broker.permuted_servers(storage_index)] == vector["order"]


@pytest.mark.parametrize("vector", ORDERS, ids=lambda v: v["storage_index_b32"])
def test_preferred_peers_come_first(vector: dict[str, Any]) -> None:
    # Tahoe's documented behaviour: preferred servers first, each group in ring order.  (Real
    # 1.20 compares its bytes server IDs with the str IDs read from tahoe.cfg, so its
    # peers.preferred has no effect; the vectors record both.)
    broker = broker_with_connected_servers(tuple(VECTORS["preferred"]))
    storage_index = base32.a2b(vector["storage_index_b32"])
    assert [h.server_id for h in broker.permuted_servers(storage_index)] == vector[
        "order_with_preferred_as_bytes"
    ]
    assert vector["order_with_preferred_as_str_from_tahoe_cfg"] == vector["order"]


def test_only_connected_servers_take_part_unless_asked() -> None:
    broker = broker_with_connected_servers()
    storage_index = base32.a2b(ORDERS[0]["storage_index_b32"])
    gone = ORDERS[0]["order"][1]
    handle = broker.get_server(gone)
    assert handle is not None
    handle.client = None
    order = [h.server_id for h in broker.permuted_servers(storage_index)]
    assert order == [s for s in ORDERS[0]["order"] if s != gone]
    everyone = [h.server_id for h in broker.permuted_servers(storage_index, connected_only=False)]
    assert everyone == ORDERS[0]["order"]


def test_bad_announced_seed_falls_back_to_the_key() -> None:
    server = next(s for s in VECTORS["servers"] if "permutation-seed-base32" not in s["ann"])
    ann = {**server["ann"], "permutation-seed-base32": "not base32!"}
    assert permutation_seed(server["server_id"], ann) == base32.a2b(server["server_id"][3:])


@given(st.binary(min_size=16, max_size=16))
def test_order_is_a_permutation_of_the_connected_servers(storage_index: bytes) -> None:
    broker = broker_with_connected_servers()
    order = [h.server_id for h in broker.permuted_servers(storage_index)]
    assert sorted(order) == sorted(s["server_id"] for s in VECTORS["servers"])
