"""The HTTP storage client's batcher: calls made together go as one batch, and batches grow under load."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from lafs.storage_client import http as http_client
from lafs.storage_client.http import _Batcher


class Sender:
    """Records each batch it is given and answers it when the test says."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.answers: list[defer.Deferred[list[Any]]] = []

    async def send(self, items: list[Any]) -> list[Any]:
        self.batches.append(items)
        answer: defer.Deferred[list[Any]] = defer.Deferred()
        self.answers.append(answer)
        return await answer

    def answer(self, index: int, results: list[Any] | None = None) -> None:
        items = self.batches[index]
        self.answers[index].callback(results if results is not None else [item * 10 for item in items])


def new_batcher() -> tuple[Clock, Sender, _Batcher]:
    clock, sender = Clock(), Sender()
    return clock, sender, _Batcher(clock, sender.send)


def calls(batcher: _Batcher, items: range) -> list[defer.Deferred[Any]]:
    return [defer.Deferred.fromCoroutine(batcher.call(item)) for item in items]


def results(deferreds: list[defer.Deferred[Any]]) -> list[Any]:
    found: list[Any] = []
    for d in deferreds:
        d.addBoth(found.append)
    return found


def test_calls_made_in_one_turn_go_together_at_the_next() -> None:
    clock, sender, batcher = new_batcher()
    pending = calls(batcher, range(5))
    assert sender.batches == [], "nothing goes before the reactor turns"
    clock.advance(0)
    assert sender.batches == [[0, 1, 2, 3, 4]]
    sender.answer(0)
    assert results(pending) == [0, 10, 20, 30, 40]


def test_calls_made_while_batches_are_out_wait_and_go_as_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_client, "BATCHES_OUT", 2)
    clock, sender, batcher = new_batcher()
    first = calls(batcher, range(1))
    clock.advance(0)
    second = calls(batcher, range(1, 2))
    clock.advance(0)
    waiting = calls(batcher, range(2, 7))
    clock.advance(0)
    assert sender.batches == [[0], [1]], "two are out: the rest wait"
    sender.answer(1)
    assert sender.batches == [[0], [1], [2, 3, 4, 5, 6]], "one came back: everything waiting goes together"
    sender.answer(0)
    sender.answer(2)
    assert results(first) + results(second) + results(waiting) == [0, 10, 20, 30, 40, 50, 60]


def test_a_batch_holds_at_most_max_batch_items(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_client, "MAX_BATCH", 3)
    clock, sender, batcher = new_batcher()
    pending = calls(batcher, range(7))
    clock.advance(0)
    assert sender.batches == [[0, 1, 2], [3, 4, 5], [6]]
    for index in range(3):
        sender.answer(index)
    assert results(pending) == [0, 10, 20, 30, 40, 50, 60]


def test_each_item_gets_its_own_failure_and_a_failed_batch_fails_every_item() -> None:
    clock, sender, batcher = new_batcher()
    pending = calls(batcher, range(3))
    clock.advance(0)
    sender.answer(0, [0, ValueError("item 1 refused"), 20])
    found = results(pending)
    assert found[0] == 0 and found[2] == 20
    assert found[1].check(ValueError) and "item 1 refused" in str(found[1].value)

    more = calls(batcher, range(2))
    clock.advance(0)
    sender.answers[1].errback(ConnectionError("server gone"))
    assert [f.check(ConnectionError) for f in results(more)] == [ConnectionError, ConnectionError]


def test_a_caller_that_gives_up_is_skipped_and_the_others_get_their_answers() -> None:
    clock, sender, batcher = new_batcher()
    pending = calls(batcher, range(3))
    clock.advance(0)
    pending[1].cancel()
    sender.answer(0)
    found = results(pending)
    assert found[0] == 0 and found[2] == 20
    assert found[1].check(defer.CancelledError)
