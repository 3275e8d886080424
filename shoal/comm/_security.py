"""Security: the credentials a shoal process presents — TLS certificates and the token.

Owns: dask's ``Security`` interface (its constructor fields, ``distributed.comm.tls.*`` and
``distributed.comm.require-encryption`` config keys, ``Security.temporary()``), building
``ssl.SSLContext`` objects per role, and shoal's cluster token (see ``_handshake.py``).
Must not know about sockets or event loops.

The token is a shoal addition: ``Security(token=...)``; when not given it is read from the
``SHOAL_TOKEN`` environment variable. A scheduler bound off loopback with no ``Security``
makes one up (see ``Scheduler.start``).
"""

from __future__ import annotations

import datetime
import json
import os
import ssl
import tempfile
from typing import Any

TOKEN_ENV = "SHOAL_TOKEN"
# How a nanny hands a worker process its TLS credentials (never on its command line,
# which any user of the machine can read with ``ps``).
SECURITY_ENV = "SHOAL_SECURITY"

_FIELDS = {
    "tls_ca_file": "distributed.comm.tls.ca-file",
    "tls_ciphers": "distributed.comm.tls.ciphers",
    "tls_client_cert": "distributed.comm.tls.client.cert",
    "tls_client_key": "distributed.comm.tls.client.key",
    "tls_scheduler_cert": "distributed.comm.tls.scheduler.cert",
    "tls_scheduler_key": "distributed.comm.tls.scheduler.key",
    "tls_worker_cert": "distributed.comm.tls.worker.cert",
    "tls_worker_key": "distributed.comm.tls.worker.key",
}
_VERSIONS = {1.2: ssl.TLSVersion.TLSv1_2, 1.3: ssl.TLSVersion.TLSv1_3}
_ROLES = ("client", "scheduler", "worker")


def _tls_version(value: Any, name: str) -> ssl.TLSVersion | None:
    if value is None or isinstance(value, ssl.TLSVersion):
        return value
    try:
        return _VERSIONS[float(value)]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{name} must be 1.2, 1.3 or None, got {value!r}") from None


class Security:
    """Credentials for TLS connections and authentication, as in dask.distributed.

    Args:
        require_encryption: refuse plain ``tcp://`` connections (default: config
            ``distributed.comm.require-encryption``, else True when any TLS field is given).
        tls_ca_file, tls_client_cert, tls_client_key, tls_scheduler_cert,
        tls_scheduler_key, tls_worker_cert, tls_worker_key: paths, or PEM text in memory
            (default: the ``distributed.comm.tls.*`` config keys).
        tls_ciphers, tls_min_version, tls_max_version: TLS settings (versions 1.2 / 1.3).
        extra_conn_args: kept for dask compatibility.
        token: shoal's shared secret for the handshake (default: ``SHOAL_TOKEN``).

    Raises:
        TypeError: an unknown field.
    """

    __slots__ = ("require_encryption", "extra_conn_args", "tls_min_version", "tls_max_version",
                 "token", "_contexts", *_FIELDS)
    tls_ca_file: str | None
    tls_ciphers: str | None
    tls_client_cert: str | None
    tls_client_key: str | None
    tls_scheduler_cert: str | None
    tls_scheduler_key: str | None
    tls_worker_cert: str | None
    tls_worker_key: str | None

    def __init__(self, require_encryption: bool | None = None, **kwargs: Any) -> None:
        import dask.config

        self._contexts: dict[tuple[str, bool], ssl.SSLContext | None] = {}
        extra = set(kwargs) - (set(self.__slots__) - {"_contexts", "require_encryption"})
        if extra:
            raise TypeError(f"Security got unknown fields {sorted(extra)}; it takes "
                            f"{sorted(s for s in self.__slots__ if s[0] != '_')}")
        self.extra_conn_args: dict[str, Any] = dict(kwargs.pop("extra_conn_args", None) or {})
        token = kwargs.pop("token", None)
        self.token: str | None = token if token is not None else os.environ.get(TOKEN_ENV) or None
        tls_given = bool(kwargs)
        for field, key in _FIELDS.items():
            value = kwargs.get(field)
            setattr(self, field, value if value is not None else dask.config.get(key, None))
        self.tls_min_version = _tls_version(
            kwargs.get("tls_min_version", dask.config.get("distributed.comm.tls.min-version", 1.2)),
            "tls_min_version") or ssl.TLSVersion.TLSv1_2
        self.tls_max_version = _tls_version(
            kwargs.get("tls_max_version", dask.config.get("distributed.comm.tls.max-version", None)),
            "tls_max_version")
        if require_encryption is None:
            require_encryption = dask.config.get("distributed.comm.require-encryption", None)
        if require_encryption is None:
            require_encryption = tls_given
        self.require_encryption = bool(require_encryption)

    @classmethod
    def temporary(cls, **kwargs: Any) -> Security:
        """A Security with a fresh self-signed certificate (in memory) for every role.

        Raises:
            ImportError: the ``cryptography`` library is not installed.
        """
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import NameOID
        except ImportError:  # pragma: no cover - a dependency of shoal
            raise ImportError("Security.temporary() needs the 'cryptography' library: "
                              "pip install cryptography") from None
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shoal-internal")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("shoal-internal")]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        fields: dict[str, Any] = {"tls_ca_file": cert_pem}
        for role in _ROLES:
            fields[f"tls_{role}_cert"] = cert_pem
            fields[f"tls_{role}_key"] = key_pem
        return cls(require_encryption=True, **{**fields, **kwargs})

    # --- what transports use ------------------------------------------------------------------

    def get_tls_config_for_role(self, role: str) -> dict[str, Any]:
        if role not in _ROLES:
            raise ValueError(f"unknown role {role!r}; one of {_ROLES}")
        return {"ca_file": self.tls_ca_file, "ciphers": self.tls_ciphers,
                "cert": getattr(self, f"tls_{role}_cert"),
                "key": getattr(self, f"tls_{role}_key")}

    def get_connection_args(self, role: str) -> dict[str, Any]:
        """What a ``connect`` in ``role`` needs (dask's shape, plus ``token``)."""
        return {"ssl_context": self.ssl_context(role, server=False),
                "require_encryption": self.require_encryption,
                "extra_conn_args": self.extra_conn_args, "token": self.token}

    def get_listen_args(self, role: str) -> dict[str, Any]:
        """What a ``listen`` in ``role`` needs (dask's shape, plus ``token``)."""
        return {"ssl_context": self.ssl_context(role, server=True),
                "require_encryption": self.require_encryption,
                "extra_conn_args": self.extra_conn_args, "token": self.token}

    def ssl_context(self, role: str, server: bool) -> ssl.SSLContext | None:
        """A mutual-TLS context for ``role``, or None when no certificate is configured.

        Raises:
            ValueError: the CA file is given without a certificate for ``role`` or so.
        """
        if (role, server) not in self._contexts:  # loading certificates is slow: once
            self._contexts[role, server] = self._new_context(role, server)
        return self._contexts[role, server]

    def _new_context(self, role: str, server: bool) -> ssl.SSLContext | None:
        tls = self.get_tls_config_for_role(role)
        if not tls["ca_file"] and not tls["cert"]:
            return None
        if not (tls["ca_file"] and tls["cert"]):
            raise ValueError(f"TLS for the {role} needs both a CA (tls_ca_file) and a "
                             f"certificate (tls_{role}_cert, and its key)")
        purpose = ssl.Purpose.CLIENT_AUTH if server else ssl.Purpose.SERVER_AUTH
        ca = tls["ca_file"]
        if "\n" in ca:
            ctx = ssl.create_default_context(purpose, cadata=ca)
        else:
            ctx = ssl.create_default_context(purpose, cafile=ca)
        ctx.minimum_version = self.tls_min_version
        if self.tls_max_version is not None:
            ctx.maximum_version = self.tls_max_version
        _load_cert_chain(ctx, tls["cert"], tls["key"])
        ctx.verify_mode = ssl.CERT_REQUIRED  # both ends prove themselves
        ctx.check_hostname = False  # a cluster's own CA; peers are addressed by IP
        if tls["ciphers"]:
            ctx.set_ciphers(tls["ciphers"])
        return ctx

    def dashboard_ssl_context(self) -> ssl.SSLContext | None:
        """HTTPS for the dashboard with the scheduler's certificate (browsers bring no
        client certificate, so none is asked for), or None without one."""
        cert, key = self.tls_scheduler_cert, self.tls_scheduler_key
        if not cert:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = self.tls_min_version
        _load_cert_chain(ctx, cert, key)
        return ctx

    # --- passing it on --------------------------------------------------------------------------

    def to_env(self) -> dict[str, str]:
        """Environment variables that give a worker process these credentials (all of
        them, config included: the worker then need not import dask's config to start)."""
        env: dict[str, str] = {}
        if self.token:
            env[TOKEN_ENV] = self.token
        fields: dict[str, Any] = {f: getattr(self, f) for f in _FIELDS}
        fields["require_encryption"] = self.require_encryption
        fields["tls_min_version"] = self.tls_min_version.value
        fields["tls_max_version"] = None if self.tls_max_version is None else self.tls_max_version.value
        env[SECURITY_ENV] = json.dumps(fields)
        return env

    @classmethod
    def from_env(cls) -> Security:
        """The credentials a nanny passed (see :meth:`to_env`), or else the config's."""
        raw = os.environ.pop(SECURITY_ENV, None)  # not for the tasks' own subprocesses
        if not raw:
            return cls()
        fields = json.loads(raw)
        self = cls.__new__(cls)
        self._contexts = {}
        self.extra_conn_args = {}
        self.token = os.environ.get(TOKEN_ENV) or None
        self.require_encryption = bool(fields.pop("require_encryption"))
        self.tls_min_version = ssl.TLSVersion(fields.pop("tls_min_version"))
        top = fields.pop("tls_max_version")
        self.tls_max_version = None if top is None else ssl.TLSVersion(top)
        for field in _FIELDS:
            setattr(self, field, fields.get(field))
        return self

    def __repr__(self) -> str:
        shown = [f"{f}={'<in memory>' if v and chr(10) in str(v) else v!r}"
                 for f in _FIELDS if (v := getattr(self, f))]
        if self.token:
            shown.append("token=<set>")
        return f"Security(require_encryption={self.require_encryption}, {', '.join(shown)})"


_default: list[Security] = []


def set_default_security(security: Security | None) -> None:
    """Make ``security`` what connections use when given none (a worker process sets the
    credentials its nanny passed; tasks' clients and actor calls then use them)."""
    _default[:] = [] if security is None else [security]


def default_security() -> Security:
    """The process's credentials: those set with :func:`set_default_security`, else the
    config's and ``SHOAL_TOKEN``."""
    return _default[0] if _default else Security()


def _load_cert_chain(ctx: ssl.SSLContext, cert: str, key: str | None) -> None:
    """Load a certificate and key given as paths or PEM text (written for the moment to a
    private temporary directory, since OpenSSL loads chains from files only)."""
    if "\n" not in cert and (key is None or "\n" not in key):
        ctx.load_cert_chain(cert, key)
        return
    with tempfile.TemporaryDirectory(prefix="shoal-tls-") as tmp:  # mode 0700
        paths = []
        for name, text in (("cert.pem", cert), ("key.pem", key)):
            if text is None or "\n" not in text:
                paths.append(text)
                continue
            path = os.path.join(tmp, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            paths.append(path)
        assert paths[0] is not None
        ctx.load_cert_chain(paths[0], paths[1])


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` exposes nothing beyond this machine."""
    import ipaddress

    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
