"""Encryption keys: Fernet keys, newest first, so a key can rotate without downtime.

``TOKEN_ENCRYPTION_KEYS`` lists the keys; the first encrypts, every one decrypts. In
development without that variable a key is generated once into the data directory
(mode 0600) and reused; production refuses to run without configured keys. Key
material never appears in a message: a key is named by its position or fingerprint.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from backend.services.integrations.errors import TokenStoreError
from backend.setting_specs import TOKEN_ENCRYPTION_KEYS
from utils.errors import InvalidValue

logger = logging.getLogger(__name__)
KEY_FILE_NAME = "token-encryption.key"
KEY_BYTES = 32


def key_problem(text: str) -> str | None:
    """Why a comma-separated key list is not usable (never quoting a key), or None."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        return "no key given"
    for position, item in enumerate(items, start=1):
        where = f"key {position} of {len(items)}"
        if not item:
            return f"{where} is empty"
        try:
            raw = base64.b64decode(item.encode("ascii"), altchars=b"-_", validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return f"{where} is not url-safe base64"
        if len(raw) != KEY_BYTES:
            return f"{where} decodes to {len(raw)} bytes, not {KEY_BYTES}"
    return None


def parse_keys(text: str, what: str = "TOKEN_ENCRYPTION_KEYS") -> tuple[bytes, ...]:
    """The keys of a comma-separated list, newest first; InvalidValue naming the bad one."""
    problem = key_problem(text)
    if problem:
        raise InvalidValue(
            f"{what} is not valid ({problem}): expected {TOKEN_ENCRYPTION_KEYS.expected}"
        )
    return tuple(item.strip().encode("ascii") for item in text.split(","))


def configured_keys(text: str | None, *, production: bool) -> tuple[bytes, ...] | None:
    """The configured keys; None in development without any (one is generated then).

    Production without keys is refused: a generated key would live on one machine's
    disk only, and every other worker or machine could not read what it wrote.
    """
    if text is not None:
        return parse_keys(text)
    if production:
        raise InvalidValue(
            "TOKEN_ENCRYPTION_KEYS is not set: it is required in production "
            "(comma-separated Fernet keys, newest first; make one with invoke tokens.new-key)"
        )
    return None


def fingerprint(key: bytes) -> str:
    """A short public name for a key (a hash prefix; reveals nothing of the key)."""
    return hashlib.sha256(key).hexdigest()[:12]


def new_key() -> str:
    """A fresh Fernet key, as text for TOKEN_ENCRYPTION_KEYS."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")


class KeyRing:
    """Encrypts with the newest key, decrypts with any; its repr names fingerprints only."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        from cryptography.fernet import Fernet, MultiFernet

        if not keys:
            raise InvalidValue("TOKEN_ENCRYPTION_KEYS is not valid (no key given)")
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self.fingerprints = tuple(fingerprint(key) for key in keys)

    @property
    def newest(self) -> str:
        """Fingerprint of the key that encrypts."""
        return self.fingerprints[0]

    def encrypt(self, plaintext: bytes) -> str:
        return self._fernet.encrypt(plaintext).decode("ascii")

    def decrypt(self, ciphertext: str) -> bytes | None:
        """The plaintext, or None when no key opens it (wrong key or damaged value)."""
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(ciphertext.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            return None

    def __repr__(self) -> str:
        return f"KeyRing(keys={len(self.fingerprints)}, newest={self.newest})"


def development_key(data_dir: Path) -> bytes:
    """The data directory's development key, generated (mode 0600) and announced once.

    Written to a private temporary file and hard-linked into place, so several workers
    starting together agree on one key and nobody reads a half-written file.
    """
    path = data_dir / KEY_FILE_NAME
    try:
        if not path.exists():
            _create_key_file(path)
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError as error:
        raise TokenStoreError(
            f"cannot create or read the development key {path}: {error.strerror or error}"
        ) from None
    problem = key_problem(text)
    if problem:
        raise InvalidValue(
            f"development key file {path} is not valid ({problem}): expected one Fernet "
            "key; restore it, or delete it only if the token store is empty"
        )
    return text.encode("ascii")


def _create_key_file(path: Path) -> None:
    ensure_private_dir(path.parent)
    fd, temporary = tempfile.mkstemp(prefix=".key-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(new_key().encode("ascii") + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return  # another worker won the race: use its key
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    logger.warning(
        "generated a development token encryption key at %s (mode 0600); "
        "set TOKEN_ENCRYPTION_KEYS in production",
        path,
    )


def ensure_private_dir(directory: Path) -> None:
    """Create the data directory, and any missing parent, private to this user (0700).

    (``mkdir(parents=True)`` would create the parents with the umask's mode, possibly
    writable by others, who could then swap the data directory.)
    """
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
