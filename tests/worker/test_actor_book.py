"""The worker's actor book: which actors it holds, and whether each call runs or is refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shoal.worker import _actor_book
from shoal.worker._actor_book import (
    ActorBook,
    ActorCreated,
    ActorsReleased,
    CallFinished,
    CallReceived,
    RefuseCall,
    RunCall,
)

W = "tcp://127.0.0.1:4000"


@pytest.fixture
def book() -> Iterator[ActorBook]:
    b = ActorBook(W)
    yield b
    b.validate()


def test_a_call_to_a_held_actor_runs(book: ActorBook) -> None:
    book.handle(ActorCreated("Counter-1", "Counter"))
    assert book.handle(CallReceived(1, "Counter-1", "increment")) == [RunCall(1, "Counter-1")]
    assert book.calls == {1: "Counter-1"}
    assert book.handle(CallFinished(1)) == []
    assert book.calls == {}


def test_calls_run_in_the_order_they_arrive(book: ActorBook) -> None:
    book.handle(ActorCreated("a", "A"), ActorCreated("b", "B"))
    out = book.handle(
        CallReceived(1, "a", "f"), CallReceived(2, "b", "g"), CallReceived(3, "a", "h")
    )
    assert out == [RunCall(1, "a"), RunCall(2, "b"), RunCall(3, "a")]


def test_a_call_to_an_actor_never_held_here_is_refused_naming_it_and_the_worker(
    book: ActorBook,
) -> None:
    (cmd,) = book.handle(CallReceived(1, "Counter-9", "increment"))
    assert isinstance(cmd, RefuseCall) and cmd.call == 1
    assert "'Counter-9'" in cmd.message and W in cmd.message
    assert book.calls == {}


def test_a_call_after_release_says_the_actor_was_released(book: ActorBook) -> None:
    book.handle(ActorCreated("Counter-1", "Counter"))
    assert book.handle(ActorsReleased(["Counter-1"])) == []
    (cmd,) = book.handle(CallReceived(5, "Counter-1", "increment"))
    assert isinstance(cmd, RefuseCall)
    assert "released" in cmd.message and "Counter" in cmd.message and W in cmd.message


def test_releasing_an_actor_refuses_its_unfinished_calls_only(book: ActorBook) -> None:
    book.handle(ActorCreated("a", "A"), ActorCreated("b", "B"))
    book.handle(CallReceived(1, "a", "f"), CallReceived(2, "b", "f"), CallReceived(3, "a", "f"))
    out = book.handle(ActorsReleased(["a"]))
    assert [c.call for c in out] == [1, 3]
    assert all(isinstance(c, RefuseCall) and "released" in c.message for c in out)
    assert book.calls == {2: "b"}
    # the actor thread finishing a refused call later changes nothing
    assert book.handle(CallFinished(1)) == []


def test_releasing_keys_that_are_not_actors_is_harmless(book: ActorBook) -> None:
    book.handle(ActorCreated("a", "A"))
    assert book.handle(ActorsReleased(["x", "y"])) == []
    assert book.actors == {"a": "A"}


def test_an_actor_created_again_under_a_released_key_takes_calls(book: ActorBook) -> None:
    book.handle(ActorCreated("a", "A"), ActorsReleased(["a"]), ActorCreated("a", "A"))
    assert book.handle(CallReceived(1, "a", "f")) == [RunCall(1, "a")]


def test_the_memory_of_released_actors_is_bounded(
    book: ActorBook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_actor_book, "_RELEASED_MEMORY", 3)
    for i in range(10):
        book.handle(ActorCreated(i, "A"), ActorsReleased([i]))
    assert list(book.released) == [7, 8, 9]


def test_an_unknown_event_is_a_type_error(book: ActorBook) -> None:
    with pytest.raises(TypeError, match="unknown event"):
        book.handle(object())  # type: ignore[arg-type]
