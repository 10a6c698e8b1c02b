"""Servers of happiness: how many distinct servers hold distinct shares (a maximum bipartite matching)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set


def happiness(placements: Mapping[str, set[int]]) -> int:
    """The size of a maximum matching between servers and the share numbers each holds."""
    return len(_max_matching(list(placements), placements))


def _max_matching(servers: Sequence[str], holds: Mapping[str, set[int]]) -> dict[int, str]:
    """share -> server of a maximum matching; earlier servers (permuted order) win ties."""
    match_of_share: dict[int, str] = {}

    def augment(server: str, seen: set[int]) -> bool:
        for share in sorted(holds.get(server, ())):
            if share in seen:
                continue
            seen.add(share)
            if share not in match_of_share or augment(match_of_share[share], seen):
                match_of_share[share] = server
                return True
        return False

    for server in servers:
        augment(server, set())
    return match_of_share


def plan_placement(
    permuted: Sequence[str], writable: Set[str], existing: Mapping[str, set[int]], total: int
) -> dict[str, set[int]]:
    """Which new shares to upload to which writable server (Tahoe's servers-of-happiness placement).

    1. Match read-only servers with shares they already hold; 2. match writable
    servers with shares they hold, among what is left; 3. give each remaining
    writable server (in permuted order) one remaining share; 4. spread the shares
    still homeless evenly over the writable servers.  A share held by a server but
    left out of every matching counts as homeless and is placed again elsewhere.
    """
    readonly = [s for s in permuted if s not in writable]
    matched = _max_matching(readonly, existing)
    used_servers = set(matched.values())
    rest = {s: existing.get(s, set()) - set(matched) for s in permuted if s in writable}
    matched.update(_max_matching([s for s in permuted if s in writable and s not in used_servers], rest))
    used_servers = set(matched.values())
    free_servers = [s for s in permuted if s in writable and s not in used_servers]
    homeless = [share for share in range(total) if share not in matched]
    plan: dict[str, set[int]] = {}
    for server, share in zip(free_servers, homeless, strict=False):
        plan.setdefault(server, set()).add(share)
    homeless = homeless[len(free_servers) :]
    targets = [s for s in permuted if s in writable]
    for share in homeless:
        if not targets:
            break
        # Fewest shares (held or planned) first; permuted order breaks ties.
        load = {s: len(existing.get(s, set())) + len(plan.get(s, set())) for s in targets}
        server = min(targets, key=lambda s: (load[s], targets.index(s)))
        plan.setdefault(server, set()).add(share)
    return plan
