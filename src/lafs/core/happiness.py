"""Servers of happiness: how many distinct servers hold distinct shares (a maximum bipartite matching)."""

from __future__ import annotations

from collections.abc import Mapping


def happiness(placements: Mapping[str, set[int]]) -> int:
    """The size of a maximum matching between servers and the share numbers each holds."""
    match_of_share: dict[int, str] = {}

    def augment(server: str, seen: set[int]) -> bool:
        for share in sorted(placements[server]):
            if share in seen:
                continue
            seen.add(share)
            if share not in match_of_share or augment(match_of_share[share], seen):
                match_of_share[share] = server
                return True
        return False

    return sum(1 for server in placements if augment(server, set()))
