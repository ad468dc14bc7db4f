"""A throw-away certificate authority and server certificate for the emulator's HTTPS.

Generated on demand (EC P-256 keys, milliseconds) into a private ``b24-emulator-tls-*`` temp directory
that every running emulator of the process shares: each holds a lease (:func:`acquire_tls_files` /
:func:`release_tls_files`) and the directory is removed when the last lease is released, or at
interpreter exit for leases never released. The server certificate's SAN covers ``127.0.0.1``, ``::1``
and ``localhost``, so both host names verify against :attr:`TlsFiles.ca_cert`.
"""

from __future__ import annotations

import atexit
import datetime as dt
import ipaddress
import os
import shutil
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TlsFiles", "acquire_tls_files", "release_tls_files", "server_context", "tls_files"]

TEMP_PREFIX = "b24-emulator-tls-"


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the generated PEM files."""

    ca_cert: str
    server_cert: str
    server_key: str


@dataclass
class _Shared:
    """This process's certificate directory and how many leases it has."""

    directory: Path
    files: TlsFiles
    leases: int = 0


_LOCK = threading.Lock()
_SHARED: dict[int, _Shared] = {}  # by pid: a forked child never removes its parent's directory


def _generate(directory: Path) -> TlsFiles:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    not_before = now - dt.timedelta(days=1)
    not_after = now + dt.timedelta(days=825)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "airflow-provider-b24 emulator CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    ca_path = directory / "ca.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server-key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(pem))
    cert_path.write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    key_path.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(key_path, 0o600)
    return TlsFiles(ca_cert=str(ca_path), server_cert=str(cert_path), server_key=str(key_path))


def acquire_tls_files() -> TlsFiles:
    """Lease this process's CA and server PEMs, generating them when no lease is held."""
    pid = os.getpid()
    with _LOCK:
        shared = _SHARED.get(pid)
        if shared is None or not Path(shared.files.ca_cert).exists():
            directory = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
            try:
                files = _generate(directory)
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
            shared = _SHARED[pid] = _Shared(directory, files)
        shared.leases += 1
        return shared.files


def release_tls_files(files: TlsFiles) -> None:
    """Give back a lease; the last one removes the directory (a stale lease is a no-op)."""
    with _LOCK:
        shared = _SHARED.get(os.getpid())
        if shared is None or shared.files != files:
            return
        shared.leases -= 1
        if shared.leases <= 0:
            del _SHARED[os.getpid()]
            shutil.rmtree(shared.directory, ignore_errors=True)


def tls_files() -> TlsFiles:
    """This process's CA and server PEMs, valid until the interpreter exits (a lease never released)."""
    return acquire_tls_files()


@atexit.register
def _remove_at_exit() -> None:
    """Remove the directory of leases never released (``tls_files()`` callers, emulators never stopped)."""
    with _LOCK:
        shared = _SHARED.pop(os.getpid(), None)
    if shared is not None:
        shutil.rmtree(shared.directory, ignore_errors=True)


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2+) loaded with the generated certificate chain."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.server_cert, files.server_key)
    context.set_alpn_protocols(["http/1.1"])
    return context
