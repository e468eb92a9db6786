"""AES-256-GCM file container: encrypt while streaming, decrypt to a temp name that appears only when verified.

Container layout (all fields fixed size, no length prefix: the tag is the last 16 bytes of the file)::

    offset  size  field
    0       6     magic  b"MPGENC"
    6       1     version (1 = AES-256-GCM, key = PBKDF2-HMAC-SHA256(password, salt, 600_000 iterations, 32 bytes))
    7       16    salt (random per run; the files of one run share salt and key, each has its own nonce)
    23      12    nonce (random per file)
    35      n     ciphertext (same length as the plaintext: the gzip stream, or the serialised table)
    35+n    16    GCM tag

The 35 header bytes are authenticated as associated data, so changing any byte of the file fails the tag check.
Read a file back with ``decrypt_file(src, dst, password)`` (or any AES-GCM implementation given this layout).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from core.runs import atomic_path

# cryptography is imported where it is used: a run without --encrypt need not map its ~12 MB of native code

MAGIC = b"MPGENC"
VERSION = 1
ITERATIONS = 600_000
SALT_SIZE, NONCE_SIZE, TAG_SIZE, KEY_SIZE = 16, 12, 16, 32
HEADER_SIZE = len(MAGIC) + 1 + SALT_SIZE + NONCE_SIZE
CHUNK = 1 << 20


class DecryptionError(ValueError):
    """The file is not a container, or the password is wrong, or the file was changed."""


def derive_key(password: str, salt: bytes) -> bytes:
    """32-byte AES key from a password (PBKDF2-HMAC-SHA256, 600,000 iterations; ~0.07 s here)."""
    if not password:
        raise ValueError("password must not be empty")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
    return PBKDF2HMAC(hashes.SHA256(), KEY_SIZE, salt, ITERATIONS).derive(password.encode("utf-8"))


class Seal:
    """A key derived once (per run) and its salt; opens one encrypting stream per file."""

    def __init__(self, password: str, salt: bytes | None = None):
        self.salt = salt or secrets.token_bytes(SALT_SIZE)
        self.key = derive_key(password, self.salt)

    def writer(self, raw) -> SealedWriter:
        return SealedWriter(raw, self.key, self.salt)


class SealedWriter:
    """Streaming layer: writes the header now, ciphertext per ``write``, the tag on ``close`` (raw stays open)."""

    def __init__(self, raw, key: bytes, salt: bytes):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        self._raw = raw
        header = MAGIC + bytes([VERSION]) + salt + secrets.token_bytes(NONCE_SIZE)
        self._encryptor = Cipher(algorithms.AES(key), modes.GCM(header[-NONCE_SIZE:])).encryptor()
        self._encryptor.authenticate_additional_data(header)
        raw.write(header)

    def write(self, data) -> None:
        self._raw.write(self._encryptor.update(data))

    def close(self) -> None:
        self._raw.write(self._encryptor.finalize() + self._encryptor.tag)


def decrypt_file(src: str | os.PathLike, dst: str | os.PathLike, password: str) -> Path:
    """Decrypt ``src`` into ``dst`` in flat memory; ``dst`` appears (atomically) only if the tag verifies."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    src, dst = Path(src), Path(dst)
    size = src.stat().st_size
    with open(src, "rb") as fin:
        header = fin.read(HEADER_SIZE)
        if len(header) < HEADER_SIZE or size < HEADER_SIZE + TAG_SIZE or not header.startswith(MAGIC):
            raise DecryptionError(f"not an encrypted container (no {MAGIC.decode()} header): {src}")
        if header[len(MAGIC)] != VERSION:
            raise DecryptionError(f"unsupported container version {header[len(MAGIC)]} (known: {VERSION}): {src}")
        salt = header[len(MAGIC) + 1:len(MAGIC) + 1 + SALT_SIZE]
        decryptor = Cipher(algorithms.AES(derive_key(password, salt)), modes.GCM(header[-NONCE_SIZE:])).decryptor()
        decryptor.authenticate_additional_data(header)
        try:
            # plaintext reaches only the temp file before the tag is checked; it is deleted if the check fails
            with atomic_path(dst) as tmp, open(tmp, "xb") as fout:
                remaining = size - HEADER_SIZE - TAG_SIZE
                while remaining:
                    chunk = fin.read(min(CHUNK, remaining))
                    if not chunk:
                        raise DecryptionError(f"wrong password or damaged file: {src} is truncated")
                    fout.write(decryptor.update(chunk))
                    remaining -= len(chunk)
                fout.write(decryptor.finalize_with_tag(fin.read(TAG_SIZE)))
        except InvalidTag:
            raise DecryptionError(f"wrong password or damaged file: {src} fails the GCM tag check") from None
    return dst
