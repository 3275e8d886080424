"""Security: dask's fields and config keys, temporary certificates, passing credentials to a
worker process. No sockets."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys

import dask
import pytest

from shoal import Security
from shoal.comm._security import SECURITY_ENV, TOKEN_ENV, is_loopback


def test_fields_default_to_dasks_config_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with dask.config.set({"distributed.comm.tls.ca-file": "/ca.pem",
                          "distributed.comm.tls.worker.cert": "/w.pem",
                          "distributed.comm.tls.min-version": 1.3,
                          "distributed.comm.require-encryption": True}):
        sec = Security()
    assert sec.tls_ca_file == "/ca.pem" and sec.tls_worker_cert == "/w.pem"
    assert sec.tls_min_version == ssl.TLSVersion.TLSv1_3
    assert sec.require_encryption
    assert not Security().require_encryption
    assert Security(tls_ca_file="/ca.pem").require_encryption  # as dask: TLS given -> required


def test_unknown_fields_are_refused_naming_the_valid_ones() -> None:
    with pytest.raises(TypeError, match="tls_ca_file"):
        Security(tls_ca="/ca.pem")


def test_token_comes_from_shoal_token_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert Security().token == "from-env"
    assert Security(token="given").token == "given"
    assert "from-env" not in repr(Security())


def test_temporary_makes_mutual_tls_contexts_for_every_role() -> None:
    sec = Security.temporary()
    assert sec.require_encryption
    for role in ("client", "scheduler", "worker"):
        for server in (False, True):
            ctx = sec.ssl_context(role, server=server)
            assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED
    assert sec.ssl_context("worker", True) is sec.ssl_context("worker", True)  # loaded once
    assert "BEGIN" not in repr(sec)


def test_half_configured_tls_says_what_is_missing() -> None:
    with pytest.raises(ValueError, match="tls_worker_cert"):
        Security(tls_ca_file="/ca.pem").ssl_context("worker", server=True)


def test_a_worker_process_gets_the_credentials_without_importing_dasks_config() -> None:
    sec = Security.temporary(token="tok")
    env = dict(os.environ, **sec.to_env())
    code = ("import sys; from shoal.comm._security import Security; s = Security.from_env(); "
            "assert s.token == 'tok' and s.require_encryption; "
            "assert s.ssl_context('worker', True) is not None; "
            "import os; assert 'SHOAL_SECURITY' not in os.environ; "
            "print('dask.config' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert SECURITY_ENV in sec.to_env()


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.5", True), ("localhost", True), ("::1", True),
    ("0.0.0.0", False), ("", False), ("10.1.2.3", False), ("myhost.example", False),
])
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
