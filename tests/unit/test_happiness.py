"""Servers of happiness and share placement (facts brief §9.2)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lafs.core.happiness import happiness, plan_placement

SERVERS = [f"s{i}" for i in range(10)]


def combined(existing: dict[str, set[int]], plan: dict[str, set[int]]) -> dict[str, set[int]]:
    out = {s: set(v) for s, v in existing.items()}
    for server, shares in plan.items():
        out.setdefault(server, set()).update(shares)
    return out


def test_happiness_counts_distinct_pairs() -> None:
    assert happiness({}) == 0
    assert happiness({"a": {0, 1, 2}}) == 1
    assert happiness({"a": {0}, "b": {0}}) == 1
    assert happiness({"a": {0, 1}, "b": {0}}) == 2
    assert happiness({f"s{i}": {i} for i in range(10)}) == 10


def test_fresh_upload_puts_share_i_on_the_ith_server() -> None:
    plan = plan_placement(SERVERS, set(SERVERS), {}, 10)
    assert plan == {f"s{i}": {i} for i in range(10)}


def test_fewer_servers_than_shares_spreads_evenly() -> None:
    plan = plan_placement(SERVERS[:4], set(SERVERS[:4]), {}, 10)
    assert sorted(len(v) for v in plan.values()) == [2, 2, 3, 3]
    assert set().union(*plan.values()) == set(range(10))


def test_existing_shares_are_kept_and_crowded_ones_moved() -> None:
    # A previous upload put all ten shares on three servers; the grid has grown to ten.
    existing = {"s0": {0, 1, 2, 3}, "s1": {4, 5, 6}, "s2": {7, 8, 9}}
    plan = plan_placement(SERVERS, set(SERVERS), existing, 10)
    assert happiness(combined(existing, plan)) == 10
    assert not plan.get("s0") and not plan.get("s1") and not plan.get("s2")


def test_read_only_servers_keep_their_shares() -> None:
    existing = {"s0": {0}, "s1": {1}}
    plan = plan_placement(SERVERS, set(SERVERS[2:]), existing, 10)
    assert "s0" not in plan and "s1" not in plan
    assert happiness(combined(existing, plan)) == 10


@given(
    st.integers(1, 12),
    st.integers(1, 12),
    st.dictionaries(st.sampled_from(SERVERS), st.sets(st.integers(0, 11), max_size=4), max_size=6),
    st.sets(st.sampled_from(SERVERS)),
)
def test_plan_reaches_the_best_happiness(num_servers: int, total: int, existing_raw: dict[str, set[int]], readonly: set[str]) -> None:
    permuted = SERVERS[: min(num_servers, 10)]
    existing = {s: {x for x in shares if x < total} for s, shares in existing_raw.items() if s in permuted}
    writable = set(permuted) - readonly
    plan = plan_placement(permuted, writable, existing, total)
    assert all(server in writable for server in plan)
    assert all(0 <= share < total for shares in plan.values() for share in shares)
    result = combined(existing, plan)
    if writable:
        assert set().union(*result.values()) == set(range(total))
    # Writable servers can take any share, so they alone reach min(total, #writable).
    assert happiness(result) >= min(total, len(writable))
