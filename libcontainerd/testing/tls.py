"""A throwaway certificate authority and server certificates for TLS tests.

Everything is made with the ``openssl`` command line (Debian package ``openssl``), so
the SDK needs no cryptography library. Keys are ECDSA P-256 and are written unencrypted:
these certificates exist only to let a test registry on 127.0.0.1 speak TLS.

Server certificates carry the authority and subject key identifiers and a
subjectAltName for every host, which strict verifiers (Go, Python 3.13's
``VERIFY_X509_STRICT``) insist on.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import attrs

from libcontainerd.errors import FailedPrecondition, InvalidArgument, RuntimeCommandError

__all__ = ["CA", "make_ca", "make_server_cert"]

DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")

# A DNS name as it may appear in a subjectAltName (labels of letters, digits, hyphens;
# an optional leading wildcard label).
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")
_COMMAND_TIMEOUT = 60.0


def _path_exists(_: object, attribute: attrs.Attribute[Path], value: Path) -> None:
    if not value.is_file():
        raise InvalidArgument(
            f"CA {attribute.name} {value} is not a file: create the CA with make_ca"
        )


@attrs.frozen
class CA:
    """A certificate authority on disk: its PEM certificate and its PEM private key."""

    cert_path: Path = attrs.field(converter=Path, validator=_path_exists)
    key_path: Path = attrs.field(converter=Path, validator=_path_exists)


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise FailedPrecondition(
            "the openssl command was not found on PATH: install it (Debian package 'openssl')"
        )
    return found


def _run(args: Sequence[str]) -> None:
    command = [_openssl(), *args]
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeCommandError(
            f"openssl did not finish within {_COMMAND_TIMEOUT:.0f}s",
            command=command,
        ) from exc
    if done.returncode != 0:
        raise RuntimeCommandError(
            f"openssl failed with exit code {done.returncode}: {done.stderr.strip()}",
            command=command,
            exit_code=done.returncode,
            stderr=done.stderr,
        )


def _san_entries(hosts: Sequence[str]) -> list[str]:
    if isinstance(hosts, str):
        raise InvalidArgument("hosts must be a sequence of host names or IP addresses, not a str")
    if not hosts:
        raise InvalidArgument("hosts must name at least one host name or IP address")
    entries: list[str] = []
    for host in hosts:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            if len(host) > 253 or not _DNS_NAME.fullmatch(host):
                raise InvalidArgument(
                    f"host {host!r} is neither an IP address nor a valid DNS name"
                ) from None
            entries.append(f"DNS:{host}")
        else:
            entries.append(f"IP:{address.compressed}")
    return entries


def _prepare_dir(directory: Path, names: Sequence[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (directory / name).exists():
            raise InvalidArgument(
                f"{directory / name} exists already: use an empty directory for new keys"
            )


def make_ca(directory: Path | str, *, common_name: str = "libcontainerd test CA") -> CA:
    """Create a self-signed CA in ``directory`` (``ca.pem`` and ``ca-key.pem``) and return it.

    The directory is created if needed; existing files are never overwritten.
    """
    directory = Path(directory)
    if not common_name or "/" in common_name or "\n" in common_name:
        raise InvalidArgument(
            f"common_name {common_name!r} must be non-empty without '/' or newline"
        )
    cert, key = directory / "ca.pem", directory / "ca-key.pem"
    _prepare_dir(directory, [cert.name, key.name])
    try:
        _run(
            [
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "3650",
                "-subj",
                f"/CN={common_name}",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-addext",
                "subjectKeyIdentifier=hash",
            ]
        )
    except BaseException:
        cert.unlink(missing_ok=True)
        key.unlink(missing_ok=True)
        raise
    key.chmod(0o600)
    return CA(cert, key)


def make_server_cert(
    ca: CA,
    directory: Path | str,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    *,
    name: str = "server",
) -> tuple[Path, Path]:
    """Issue a server certificate signed by ``ca`` for ``hosts``; return ``(cert_path, key_path)``.

    Each host becomes a subjectAltName entry: ``IP:`` for addresses, ``DNS:`` for names.
    Files are ``<name>.pem`` and ``<name>-key.pem`` in ``directory``.
    """
    directory = Path(directory)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise InvalidArgument(
            f"name {name!r} must be a plain file name stem (letters, digits, ._-)"
        )
    san = ",".join(_san_entries(hosts))
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    csr, ext = directory / f"{name}.csr", directory / f"{name}.ext"
    _prepare_dir(directory, [cert.name, key.name])
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
        f"subjectAltName={san}\n",
        encoding="ascii",
    )
    try:
        _run(
            [
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(csr),
                "-subj",
                f"/CN={hosts[0]}",
            ]
        )
        _run(
            [
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(ca.cert_path),
                "-CAkey",
                str(ca.key_path),
                # A random serial: two certificates from one CA must never share one.
                "-set_serial",
                str(secrets.randbits(63) + 1),
                "-days",
                "825",
                "-out",
                str(cert),
                "-extfile",
                str(ext),
            ]
        )
    except BaseException:
        cert.unlink(missing_ok=True)
        key.unlink(missing_ok=True)
        raise
    finally:
        csr.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)
    key.chmod(0o600)
    return cert, key
