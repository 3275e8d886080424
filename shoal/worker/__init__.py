"""Workers: a pure state machine (``_state``) inside an I/O shell (``_server``), an
executor of tasks on threads, and the nanny that supervises the worker process."""
