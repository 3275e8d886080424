"""The scheduler: a pure state machine (``_state``) inside a thin I/O shell (``_server``)."""
