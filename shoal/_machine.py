"""The vocabulary of shoal's pure state machines (scheduler and worker): events are facts
that happened, commands are orders for the I/O shell; ``handle(*events) -> commands``."""


class Event:
    """A fact given to a state machine. Subclasses are frozen, slotted dataclasses."""

    __slots__ = ()


class Command:
    """An order a state machine returns for its I/O shell to carry out."""

    __slots__ = ()
