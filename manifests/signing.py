"""Ed25519 signatures over a bag's tag manifest (RFC 8032, via ``cryptography``).

The private key is a PKCS#8 PEM file that only its owner may read (mode
0600); a key readable by group or others is refused, because anyone who can
read it can forge a disc. The public key (SubjectPublicKeyInfo PEM) goes on
every disc so the signature can be checked without the archive home.

A signature file holds one line: the base64 of the 64-byte signature.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)


class SigningError(Exception):
    """The key is missing, unsafe or unreadable; the message says what to do."""


def generate_key(private_path: Path, public_path: Path) -> None:
    """Create a new key pair; the private file is created with mode 0600.

    Refuses (FileExistsError) to overwrite an existing key.
    """
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    private_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    public_path.write_bytes(public_pem(key))


def public_pem(key: Ed25519PrivateKey) -> bytes:
    """The public half of ``key`` as SubjectPublicKeyInfo PEM bytes."""
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load the signing key, refusing it when group or others can read it.

    Raises SigningError naming the file and the fix.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SigningError(f"signing key {path} is missing: restore it from the key backup") from None
    folder = path.parent.stat()
    if folder.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SigningError(f"the key folder {path.parent} can be written by others (mode "
                           f"{stat.S_IMODE(folder.st_mode):04o}): run chmod 700 {path.parent}")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningError(f"signing key {path} is readable by others "
                           f"(mode {stat.S_IMODE(st.st_mode):04o}): run chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise SigningError(f"signing key {path} cannot be read ({exc}): restore it "
                           "from the key backup") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"signing key {path} is not an Ed25519 key: restore the right key")
    return key


def load_public_key(path: Path) -> bytes:
    """The archive's public key file (PEM bytes); raises SigningError if missing or not Ed25519."""
    try:
        pem = path.read_bytes()
        ok = isinstance(serialization.load_pem_public_key(pem), Ed25519PublicKey)
    except FileNotFoundError:
        raise SigningError(f"public key {path} is missing: restore it from the key backup") from None
    except (ValueError, TypeError, OSError):
        ok = False
    if not ok:
        raise SigningError(f"public key {path} is not an Ed25519 PEM key: restore it from "
                           "the key backup")
    return pem


def load_keypair(private_path: Path, public_path: Path) -> tuple[Ed25519PrivateKey, bytes]:
    """The signing key and the public key PEM, checked to belong together.

    Raises SigningError if either is missing, unsafe (see
    :func:`load_private_key`) or if they do not match.
    """
    key = load_private_key(private_path)
    pem = load_public_key(public_path)
    if pem != public_pem(key):
        raise SigningError(f"public key {public_path} does not belong to {private_path}: "
                           "restore the matching pair from the key backup")
    return key, pem


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """The signature file's content for ``data``: base64 of the signature, one line."""
    return base64.b64encode(key.sign(data)) + b"\n"


def verify(public_key_pem: bytes, data: bytes, signature_file: bytes) -> bool:
    """True if ``signature_file`` (as written by :func:`sign`) signs ``data``."""
    try:
        pub = serialization.load_pem_public_key(public_key_pem)
        if not isinstance(pub, Ed25519PublicKey):
            return False
        pub.verify(base64.b64decode(signature_file.strip(), validate=True), data)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False
