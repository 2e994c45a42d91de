"""A throwaway certificate authority for TLS tests, made with the `openssl` command line.

`make_pki` writes a CA, a server certificate for 127.0.0.1 and localhost, one for another
name, and a client certificate, each signed by the CA (EC P-256 keys: fast to make, valid
for two days).
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate (PEM): what a client trusts
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_context(
        self, *, require_client_cert: bool = False, wrong_name: bool = False
    ) -> ssl.SSLContext:
        """A server presenting its certificate (``wrong_name``: one for elsewhere.invalid,
        signed by the same CA)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if wrong_name:
            folder = self.ca.parent
            context.load_cert_chain(folder / "elsewhere.pem", folder / "elsewhere.key")
        else:
            context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.load_verify_locations(self.ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def make_pki(directory: Path) -> Pki:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the TLS tests need the openssl command: apt-get install -y openssl")
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=monitord test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    leaves = {
        "server": ("subjectAltName=DNS:localhost,IP:127.0.0.1", "serverAuth"),
        "client": ("subjectAltName=DNS:monitord", "clientAuth"),
        "elsewhere": ("subjectAltName=DNS:elsewhere.invalid", "serverAuth"),
    }
    for name, (names, usage) in leaves.items():
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}")  # fmt: skip
        (directory / f"{name}.ext").write_text(
            f"{names}\nbasicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        )
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
            "-extfile", f"{name}.ext")  # fmt: skip
    return Pki(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "client.pem",
        directory / "client.key",
    )
