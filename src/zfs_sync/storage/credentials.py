"""System API keys and the admin token: generated here, stored only as SHA-256 hashes.

A system key looks like ``zs_<key id>_<secret>``. The key id is the indexed lookup; the hash
of the whole key is compared in constant time, so a timing difference reveals nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from zfs_sync.storage.common import utcnow
from zfs_sync.storage.models import AppSetting, System

KEY_PREFIX = "zs_"
ADMIN_TOKEN_HASH = "admin_token_sha256"
ADMIN_TOKEN_FILE = "admin-token"


@dataclass(frozen=True)
class NewKey:
    key: str
    key_id: str
    key_hash: str


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_system_key() -> NewKey:
    key_id = secrets.token_hex(8)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return NewKey(key, key_id, hash_secret(key))


def key_id_of(key: str) -> str | None:
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, sep, _ = key[len(KEY_PREFIX) :].partition("_")
    return key_id if sep and len(key_id) == 16 else None


def system_for_key(session: Session, key: str) -> System | None:
    """The system this key belongs to, or None. Constant-time on the secret part."""
    key_id = key_id_of(key)
    if key_id is None:
        return None
    system = session.scalars(select(System).where(System.api_key_id == key_id)).first()
    if system is None or system.api_key_hash is None:
        return None
    return system if hmac.compare_digest(system.api_key_hash, hash_secret(key)) else None


def admin_token_hash(session: Session) -> str | None:
    row = session.get(AppSetting, ADMIN_TOKEN_HASH)
    return row.value if row else None


def is_admin_token(stored_hash: str | None, token: str) -> bool:
    return stored_hash is not None and hmac.compare_digest(stored_hash, hash_secret(token))


def set_admin_token_hash(session: Session, token: str) -> None:
    row = session.get(AppSetting, ADMIN_TOKEN_HASH)
    if row is None:
        session.add(AppSetting(key=ADMIN_TOKEN_HASH, value=hash_secret(token), updated_at=utcnow()))
    elif row.value != hash_secret(token):
        row.value = hash_secret(token)
        row.updated_at = utcnow()


class InsecureTokenFile(Exception):
    pass


def write_token_file(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)


def check_token_file(path: Path) -> None:
    """Refuse a generated token file that group or others can read."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureTokenFile(
            f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {path}` (or rotate it with `zfs-sync admin rotate-token`)"
        )


def ensure_admin_token(session: Session, env_token: str | None, data_dir: Path) -> str | None:
    """Store the hash of the configured token, or generate one on first start.

    Returns the token when it was generated now (so the caller can tell the operator where
    it is), else None.
    """
    path = data_dir / ADMIN_TOKEN_FILE
    if env_token:
        set_admin_token_hash(session, env_token)
        return None
    if path.exists():
        check_token_file(path)
    if admin_token_hash(session) is not None:
        return None
    token = secrets.token_urlsafe(32)
    write_token_file(path, token)
    set_admin_token_hash(session, token)
    return token


def rotate_admin_token(session: Session, data_dir: Path) -> tuple[str, Path]:
    token = secrets.token_urlsafe(32)
    path = data_dir / ADMIN_TOKEN_FILE
    write_token_file(path, token)
    set_admin_token_hash(session, token)
    return token, path
