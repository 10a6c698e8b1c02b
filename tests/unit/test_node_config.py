"""tahoe.cfg validation: every bad value names the file, section and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from lafs.config import ConfigError, NodeConfig

GOOD = """
[node]
nickname = alice
reveal-IP-address = true
web.port = tcp:3456:interface=127.0.0.1
tub.port = tcp:1234
tub.location = tcp:example.net:1234
#log_gatherer.furl =

[client]
shares.needed = 3
shares.happy = 7
shares.total = 10

[storage]
enabled = true
reserved_space = 1G

[helper]
enabled = false

[storageserver.plugins.example]
anything = goes
"""


def test_good_config() -> None:
    config = NodeConfig.from_text("/node", GOOD)
    assert config.nickname == "alice"
    assert config.get_bool("storage", "enabled", False) is True
    assert config.get_int("client", "shares.total", 0) == 10
    assert config.get_size("storage", "reserved_space", 0) == 10**9
    assert config.get("node", "log_gatherer.furl") == ""


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [
        ("enabled = true", "enabled = maybe", r"\[storage\]enabled: 'maybe' is not a boolean"),
        ("shares.needed = 3", "shares.needed = three", r"\[client\]shares.needed: 'three' is not a whole number"),
        ("shares.total = 10", "shares.total = 2", r"shares.needed=3 and shares.total=2"),
        ("shares.happy = 7", "shares.happy = 11", r"\[client\]shares.happy: must be between 1 and shares.total"),
        ("reserved_space = 1G", "reserved_space = lots", r"\[storage\]reserved_space: 'lots' is not a size"),
        ("[helper]", "[nonsense]", r"unknown section \[nonsense\]"),
        ("nickname = alice", "nickname = alice\nnick = bob", r"\[node\]nick: unknown key"),
        ("[client]", "[client]\nintroducer.furl = pb://x@y/z#w", r"may not contain '#'"),
    ],
)
def test_bad_values_name_file_section_and_key(replace: str, by: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        config = NodeConfig.from_text("/node", GOOD.replace(replace, by))
        config.get_size("storage", "reserved_space", 0)
    assert "tahoe.cfg" in str(caught.value)


def test_unparseable_file(tmp_path: Path) -> None:
    (tmp_path / "tahoe.cfg").write_text("this is not ini\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        NodeConfig.load(str(tmp_path))


def test_not_a_node_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a node directory"):
        NodeConfig.load(str(tmp_path))


def test_introducers_and_static_servers(tmp_path: Path) -> None:
    (tmp_path / "tahoe.cfg").write_text(GOOD)
    private = tmp_path / "private"
    private.mkdir()
    (private / "introducers.yaml").write_text("introducers:\n  default:\n    furl: pb://a@b/c\n  other:\n    furl: pb://d@e/f\n")
    (private / "servers.yaml").write_text(
        "storage:\n  v0-abc:\n    ann:\n      anonymous-storage-FURL: pb://x@tcp:h:1/s\n      nickname: n\n"
    )
    config = NodeConfig.load(str(tmp_path))
    assert config.introducer_furls() == {"default": "pb://a@b/c", "other": "pb://d@e/f"}
    assert config.static_servers()["v0-abc"]["ann"]["nickname"] == "n"
    (private / "servers.yaml").write_text("storage:\n  v0-abc:\n    ann: {}\n")
    with pytest.raises(ConfigError, match=r"needs ann\.anonymous-storage-FURL"):
        config.static_servers()
    (private / "introducers.yaml").write_text("introducers: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.introducer_furls()
