"""``python -m shoal.cluster._remote scheduler|worker ARGS``: the command SSHCluster runs on
a remote host over SSH.

Owns: taking the cluster's secrets from the first line of standard input (JSON: environment
variables such as ``SHOAL_TOKEN``), so they never appear on a command line that ``ps`` shows,
and tying the process's life to the SSH session: when standard input ends (the session
closed, or SSHCluster closed it) the command is stopped as by SIGTERM. Everything else is
``shoal scheduler`` / ``shoal worker``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

# Only these may be set through the session: the secret and shoal's/dask's own settings.
_ALLOWED_PREFIXES = ("SHOAL_", "DASK_")


def _read_secrets() -> None:
    line = sys.stdin.readline()
    if not line:
        raise SystemExit("shoal remote: standard input closed before the session's settings "
                         "arrived (SSHCluster sends them first)")
    env = json.loads(line)
    if not isinstance(env, dict):
        raise SystemExit("shoal remote: the first line of input must be a JSON object")
    for name, value in env.items():
        if not str(name).startswith(_ALLOWED_PREFIXES):
            raise SystemExit(f"shoal remote: refusing to set {name!r} (only SHOAL_* and "
                             "DASK_* variables)")
        os.environ[str(name)] = str(value)


def _stop_when_input_ends() -> None:
    def watch() -> None:
        while sys.stdin.buffer.read(65536):
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="shoal-ssh-session", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("scheduler", "worker"):
        print("usage: python -m shoal.cluster._remote scheduler|worker ARGS", file=sys.stderr)
        return 2
    _read_secrets()
    # Until the command installs its own SIGTERM handler (a clean stop), end cleanly too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _stop_when_input_ends()
    from shoal.cluster.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
