"""TLS client contexts for Kafka and HTTP receivers, built one way.

`client_context` is what kafka-python builds from its ``ssl_*`` settings (TLS 1.2 or later,
the CA file or the system's CAs, an optional client certificate), so the daemon can check a
configuration before connecting and hand kafka-python the very context it checked. A file
that cannot be used raises `TlsFileError` naming the parameter.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path


class TlsFileError(ValueError):
    """A CA, certificate or key file cannot be used; ``parameter`` says which."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.reason = message


def client_context(
    *,
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A client context verifying the server against ``ca_file`` (default: the system's
    CAs), presenting ``cert_file``/``key_file`` if given, checking the host name unless
    told not to (the certificate is verified either way)."""
    if key_file is not None and cert_file is None:
        raise TlsFileError("key_file", "a client key needs its certificate (cert_file) too")
    for parameter, path in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
        if path is not None:
            readable(parameter, Path(path))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = check_hostname
    try:
        if ca_file is not None:
            context.load_verify_locations(cafile=str(ca_file))
        else:
            context.load_default_certs()
    except (ssl.SSLError, ValueError) as exc:
        raise TlsFileError(
            "ca_file", f"{ca_file} holds no usable PEM certificate ({exc})"
        ) from None
    if cert_file is not None:
        try:
            context.load_cert_chain(str(cert_file), None if key_file is None else str(key_file))
        except (ssl.SSLError, ValueError) as exc:
            parameter = "cert_file" if key_file is None else "key_file"
            raise TlsFileError(
                parameter,
                f"{cert_file} and {key_file or 'its key'} are not a matching PEM certificate "
                f"and private key ({exc})",
            ) from None
    return context


def readable(parameter: str, path: Path) -> None:
    """Raise `TlsFileError` unless ``path`` is a file this process can read."""
    if not path.exists():
        raise TlsFileError(parameter, f"{path} does not exist")
    if not path.is_file():
        raise TlsFileError(parameter, f"{path} is not a file")
    if not os.access(path, os.R_OK):
        raise TlsFileError(parameter, f"{path} is not readable by this user")


__all__ = ["TlsFileError", "client_context", "readable"]
