"""dask's ``distributed.dashboard.link`` template (JupyterHub proxies set it) applied to the
link a dashboard serves."""

from __future__ import annotations

import dask
import pytest

from shoal._dashboard_link import format_dashboard_link


def test_the_default_template_keeps_the_served_link() -> None:
    assert format_dashboard_link("http://127.0.0.1:8787/status") == "http://127.0.0.1:8787/status"
    assert format_dashboard_link(None) is None


def test_a_template_gets_scheme_host_port_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/me/")
    with dask.config.set({"distributed.dashboard.link":
                          "{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status"}):
        assert format_dashboard_link("http://127.0.0.1:8787/status") == "/user/me/proxy/8787/status"
    with dask.config.set({"distributed.dashboard.link": "{scheme}://{host}:{port}/x"}):
        assert format_dashboard_link("https://[::1]:9000/status") == "https://[::1]:9000/x"


def test_a_template_naming_what_is_not_there_says_which_and_keeps_the_served_link(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("NO_SUCH_VARIABLE_HERE", raising=False)
    with dask.config.set({"distributed.dashboard.link": "{NO_SUCH_VARIABLE_HERE}/status"}):
        assert format_dashboard_link("http://127.0.0.1:8787/status") == \
            "http://127.0.0.1:8787/status"
    assert "NO_SUCH_VARIABLE_HERE" in caplog.text
    assert "distributed.dashboard.link" in caplog.text
