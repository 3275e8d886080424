"""The topics and datasets machines beside the task state, wired into
:class:`~shoal.scheduler._server.Scheduler`.

Owns: turning topic and dataset messages into those machines' events, and their commands
into answers to clients or into task events (a dataset holding or letting go of keys).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from shoal.protocol._messages import (
    DatasetGet,
    DatasetList,
    DatasetPublish,
    DatasetUnpublish,
    Message,
    Response,
    TopicEvent,
    TopicGet,
    TopicLog,
    TopicSubscribe,
)
from shoal.scheduler import _datasets as datasets
from shoal.scheduler import _topics as topics
from shoal.scheduler._events import ClientLeft, GraphSubmitted, KeysReleased
from shoal.scheduler._server_base import ShellBase


class SideMachines(ShellBase):
    """The topics and datasets machines' messages, events and commands."""

    # --- topics and datasets: pure machines beside the task state -----------------------------

    def _on_side_message(self, sender: str, msg: Message) -> None:
        """A message for the topics or datasets machine from ``sender`` (a client's name,
        or a worker's address for ``TopicLog``)."""
        if isinstance(msg, TopicLog):
            self.log_event(list(msg.topics), msg.msg)
        elif isinstance(msg, TopicSubscribe):
            kind = topics.TopicSubscribed if msg.subscribe else topics.TopicUnsubscribed
            self._apply_side(self.topics, [kind(sender, msg.topic)])
        elif isinstance(msg, TopicGet):
            self._apply_side(self.topics, [topics.EventsAsked(sender, msg.request_id, msg.topic)])
        elif isinstance(msg, DatasetPublish):
            items = [(name, payload, list(keys)) for name, payload, keys in msg.items]
            self._apply_side(self.datasets, [datasets.DatasetsPublished(
                sender, msg.request_id, items, msg.override)])
        elif isinstance(msg, DatasetUnpublish):
            self._apply_side(self.datasets, [datasets.DatasetsUnpublished(
                sender, msg.request_id, list(msg.names))])
        elif isinstance(msg, DatasetGet):
            self._apply_side(self.datasets, [datasets.DatasetsAsked(
                sender, msg.request_id, list(msg.names))])
        elif isinstance(msg, DatasetList):
            self._apply_side(self.datasets, [datasets.DatasetNamesAsked(sender, msg.request_id)])

    def log_event(self, topic: str | Collection[str], msg: Any) -> None:
        """dask's ``Scheduler.log_event``: log ``msg`` under ``topic`` (or under each of a
        list of topics): kept, sent to the topic's subscribers, and passed to scheduler
        plugins' ``log_event(topic, msg)`` once per topic. On the scheduler's loop (a
        plugin hook, ``run_on_scheduler``); ``msg`` must be msgpack-encodable, as dask says."""
        names = [topic] if isinstance(topic, str) else list(topic)
        self._apply_side(self.topics, [topics.EventLogged(names, msg, time.time())])
        if self.plugin_host.plugins:
            for name in names:
                self._hook("log_event", name, msg)

    def _apply_side(self, machine: Any, events: list[Any]) -> None:
        """Feed a side machine; its answers go to clients, its holds become task events."""
        clients = self._clients
        for cmd in machine.handle(*events):
            if isinstance(cmd, topics.DeliverEvent):
                c = clients.get(cmd.client)
                if c is not None:
                    c.send(TopicEvent(cmd.topic, cmd.time, cmd.msg))
            elif isinstance(cmd, (topics.AnswerEvents, datasets.AnswerDatasets)):
                c = clients.get(cmd.client)
                if c is not None:
                    c.send(Response(cmd.request_id, True, cmd.value))
            elif isinstance(cmd, datasets.HoldKeys):
                self._apply([GraphSubmitted(cmd.holder, [], list(cmd.keys))])
            elif isinstance(cmd, datasets.LetGoKeys):
                self._apply([KeysReleased(cmd.holder, list(cmd.keys))])
            elif isinstance(cmd, datasets.DropHolder):
                self._apply([ClientLeft(cmd.holder)])
