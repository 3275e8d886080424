"""Pure tests of the topics machine: bounded event logs, subscriptions, answers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shoal.scheduler._topics import (
    AnswerEvents,
    CleanupDue,
    DeliverEvent,
    EventLogged,
    EventsAsked,
    OwnerJoined,
    OwnerLeft,
    SubscriberJoined,
    SubscriberLeft,
    Topics,
    TopicSubscribed,
    TopicUnsubscribed,
    membership,
)


@pytest.fixture
def topics() -> Iterator[Topics]:
    t = Topics(maxlen=3)
    yield t
    t.validate()


def test_logged_events_are_kept_and_answered_in_order(topics: Topics) -> None:
    topics.handle(EventLogged(["jobs"], {"n": 1}, 1.0), EventLogged(["jobs"], {"n": 2}, 2.0))
    out = topics.handle(EventsAsked("c", 7, "jobs"))
    assert out == [AnswerEvents("c", 7, [[1.0, {"n": 1}], [2.0, {"n": 2}]])]


def test_log_keeps_only_the_newest_events(topics: Topics) -> None:
    topics.handle(*(EventLogged(["t"], i, float(i)) for i in range(5)))
    (answer,) = topics.handle(EventsAsked("c", 1, "t"))
    assert [msg for _, msg in answer.value] == [2, 3, 4]


def test_one_event_under_several_topics(topics: Topics) -> None:
    topics.handle(EventLogged(["a", "b"], "x", 1.0))
    (answer,) = topics.handle(EventsAsked("c", 1, None))
    assert answer.value == {"a": [[1.0, "x"]], "b": [[1.0, "x"]]}


def test_unknown_topic_has_no_events(topics: Topics) -> None:
    assert topics.handle(EventsAsked("c", 1, "never")) == [AnswerEvents("c", 1, [])]


def test_subscribers_get_new_events(topics: Topics) -> None:
    topics.handle(SubscriberJoined("c1"), SubscriberJoined("c2"), TopicSubscribed("c2", "jobs"))
    out = topics.handle(EventLogged(["jobs"], "go", 5.0))
    assert out == [DeliverEvent("c2", "jobs", 5.0, "go")]
    topics.handle(TopicUnsubscribed("c2", "jobs"))
    assert topics.handle(EventLogged(["jobs"], "again", 6.0)) == []


def test_every_client_gets_print_and_warn_until_it_unsubscribes(topics: Topics) -> None:
    topics.handle(SubscriberJoined("user"), SubscriberJoined("worker-client"))
    topics.handle(TopicUnsubscribed("worker-client", "print"))
    out = topics.handle(EventLogged(["print"], {"args": ("hi",)}, 1.0))
    assert out == [DeliverEvent("user", "print", 1.0, {"args": ("hi",)})]
    out = topics.handle(EventLogged(["warn"], {"message": b""}, 2.0))
    assert [c.client for c in out] == ["user", "worker-client"]


def test_a_client_that_left_gets_nothing(topics: Topics) -> None:
    topics.handle(SubscriberJoined("c"), TopicSubscribed("c", "jobs"), SubscriberLeft("c"))
    assert topics.handle(EventLogged(["jobs", "print"], 1, 1.0)) == []
    assert topics.subscribers == {}


def test_subscription_of_an_unknown_client_is_ignored(topics: Topics) -> None:
    topics.handle(TopicSubscribed("ghost", "jobs"))
    assert topics.handle(EventLogged(["jobs"], 1, 1.0)) == []


def test_log_length_none_keeps_every_event() -> None:
    # dask's distributed.admin.low-level-log-length: null is "unlimited".
    t = Topics(maxlen=None)
    t.handle(*(EventLogged(["t"], i, float(i)) for i in range(1500)))
    (answer,) = t.handle(EventsAsked("c", 1, "t"))
    assert [msg for _, msg in answer.value] == list(range(1500))
    t.validate()


def test_log_length_zero_keeps_nothing_but_still_delivers() -> None:
    t = Topics(maxlen=0)
    t.handle(SubscriberJoined("c"), TopicSubscribed("c", "jobs"))
    assert t.handle(EventLogged(["jobs"], 1, 1.0)) == [DeliverEvent("c", "jobs", 1.0, 1)]
    assert t.handle(EventsAsked("c", 1, "jobs")) == [AnswerEvents("c", 1, [])]
    t.validate()


def test_log_length_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="low-level-log-length"):
        Topics(maxlen=-1)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, 1000),
        ({"distributed.admin.low-level-log-length": None}, None),
        ({"distributed.admin.low-level-log-length": 0}, 0),
        ({"distributed.admin.low-level-log-length": 7}, 7),
        # dask's older name for the same setting (distributed renames it on import).
        ({"distributed.scheduler.events-log-length": 5}, 5),
        ({"distributed.scheduler.events-log-length": None}, None),
    ],
)
def test_event_log_length_is_read_from_dask_config(config: dict, expected: int | None) -> None:
    import dask

    from shoal.scheduler._server import _event_log_length

    with dask.config.set(config):
        assert _event_log_length() == expected


# --- distributed.scheduler.events-cleanup-delay ----------------------------------------------


def test_a_departed_owners_events_are_cleared_after_the_cleanup_delay() -> None:
    # dask: a removed worker's (or client's) topic is truncated once the delay has passed,
    # unless it came back meanwhile; other topics are left alone.
    t = Topics(maxlen=10, cleanup_delay=60.0)
    t.handle(EventLogged(["w1", "all"], {"action": "add-worker"}, 1.0),
             EventLogged(["w2"], "x", 1.0), OwnerLeft("w1", 100.0), OwnerLeft("w2", 100.0))
    t.handle(OwnerJoined("w2"), CleanupDue(159.0))
    assert set(t.logs) == {"w1", "w2", "all"}  # not yet due
    t.handle(CleanupDue(160.0))
    assert t.handle(EventsAsked("c", 1, "w1")) == [AnswerEvents("c", 1, [])]
    (answer,) = t.handle(EventsAsked("c", 2, None))
    assert set(answer.value) == {"w2", "all"}  # w2 came back: kept
    assert t.departed == {}
    t.validate()


def test_cleanup_keeps_subscriptions_and_later_events_are_logged_again() -> None:
    t = Topics(maxlen=10, cleanup_delay=0.0)
    t.handle(SubscriberJoined("c"), TopicSubscribed("c", "w1"), EventLogged(["w1"], 1, 1.0))
    t.handle(OwnerLeft("w1", 2.0), CleanupDue(2.0))
    assert t.handle(EventLogged(["w1"], 2, 3.0)) == [DeliverEvent("c", "w1", 3.0, 2)]
    assert t.handle(EventsAsked("c", 1, "w1")) == [AnswerEvents("c", 1, [[3.0, 2]])]
    t.validate()


def test_no_cleanup_delay_keeps_departed_owners_events() -> None:
    t = Topics(maxlen=10, cleanup_delay=None)
    t.handle(EventLogged(["w1"], 1, 1.0), OwnerLeft("w1", 2.0), CleanupDue(1e9))
    assert list(t.logs) == ["w1"] and t.departed == {}
    t.validate()


def test_leaving_again_restarts_the_delay() -> None:
    t = Topics(maxlen=10, cleanup_delay=10.0)
    t.handle(EventLogged(["w1"], 1, 1.0), OwnerLeft("w1", 0.0), OwnerJoined("w1"),
             OwnerLeft("w1", 5.0), CleanupDue(12.0))
    assert list(t.logs) == ["w1"]
    t.handle(CleanupDue(15.0))
    assert t.logs == {}
    t.validate()


@pytest.mark.parametrize(
    ("msg", "events"),
    [
        ({"action": "remove-worker", "worker": "tcp://w:1"}, [OwnerLeft("tcp://w:1", 5.0)]),
        ({"action": "add-worker", "worker": "tcp://w:1"}, [OwnerJoined("tcp://w:1")]),
        ({"action": "remove-client", "client": "c-1"}, [OwnerLeft("c-1", 5.0)]),
        ({"action": "add-client", "client": "c-1"}, [OwnerJoined("c-1")]),
        ({"action": "remove-worker"}, []),  # the copy on the worker's own topic
        ({"action": "no-worker"}, []),
    ],
)
def test_the_schedulers_membership_events_name_the_owner(msg: dict, events: list) -> None:
    assert membership(msg, 5.0) == events


@pytest.mark.parametrize(
    ("config", "expected"),
    [({}, 3600.0), ({"distributed.scheduler.events-cleanup-delay": "2s"}, 2.0),
     ({"distributed.scheduler.events-cleanup-delay": 0}, 0.0),
     ({"distributed.scheduler.events-cleanup-delay": None}, None)],
)
def test_events_cleanup_delay_is_read_from_dask_config(config: dict, expected: float | None) -> None:
    import dask

    from shoal.scheduler._server import _events_cleanup_delay

    with dask.config.set(config):
        assert _events_cleanup_delay() == expected


def test_log_without_an_event_is_the_same_as_event_logged(topics: Topics) -> None:
    # (the scheduler's shell logs its update-graph events this way: one per graph)
    topics.handle(SubscriberJoined("c"), TopicSubscribed("c", "scheduler"))
    told = topics.log(["scheduler", "c-id"], {"action": "update-graph"}, 5.0)
    assert told == [DeliverEvent("c", "scheduler", 5.0, {"action": "update-graph"})]
    again = topics.handle(EventLogged(["scheduler", "c-id"], {"action": "update-graph"}, 6.0))
    assert again == [DeliverEvent("c", "scheduler", 6.0, {"action": "update-graph"})]
    out = topics.handle(EventsAsked("c", 1, "c-id"))
    assert out == [AnswerEvents("c", 1, [[5.0, {"action": "update-graph"}],
                                         [6.0, {"action": "update-graph"}]])]
