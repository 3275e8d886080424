"""The dashboard's link as users see it: dask's ``distributed.dashboard.link`` template
(``"{scheme}://{host}:{port}/status"`` by default; JupyterHub users set
``"{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status"``) filled in with the served link's
scheme, host and port and the process's environment variables, read at each call as dask
does. Knows nothing of servers: it rewrites a URL."""

from __future__ import annotations

import logging
import os
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "{scheme}://{host}:{port}/status"


def format_dashboard_link(link: str | None) -> str | None:
    """``link`` (what the dashboard serves, e.g. ``http://127.0.0.1:8787/status``) through
    the configured template; None stays None. A template naming a variable that is not
    set logs a warning naming it and gives ``link`` itself: the link is shown in reprs and
    the scheduler's identity, which a bad setting must not break."""
    if link is None:
        return None
    import dask.config

    template = dask.config.get("distributed.dashboard.link", DEFAULT_TEMPLATE)
    if not template or template == DEFAULT_TEMPLATE:
        return link
    parts = urlsplit(link)
    host = parts.hostname or ""
    fields = {**os.environ, "scheme": parts.scheme, "port": parts.port or "",
              "host": f"[{host}]" if ":" in host else host}
    try:
        return str(template).format(**fields)
    except (KeyError, IndexError) as exc:
        logger.warning("the distributed.dashboard.link template %r names %s, which is neither "
                       "scheme, host, port nor a set environment variable; showing %s",
                       template, exc, link)
        return link
