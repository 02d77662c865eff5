"""The users file: who may log in, with which role, and their passwords hashed with Argon2id.

    users = UsersFile("users.json")
    users.add("ada", "a long passphrase", role="admin")
    users.verify("ada", "a long passphrase")   # True
    users.role("ada")                           # "admin"

A JSON file beside the database, not a table in it: the app holds the DuckDB file open, and an admin must be
able to add a labeler or reset a password from a shell while it runs. The app re-reads the file when it
changes. Writes go to a temporary file that is renamed into place (never half-written), readable by its owner
only. Passwords are hashed by argon2-cffi (Argon2id, its recommended parameters); the file never holds one in
clear.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ROLES = ("labeler", "admin")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # Argon2 hashes any length; this bounds the work one login request can ask for
FORMAT_VERSION = 1


class UsersError(ValueError):
    """A users file or a change to it that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    created: str
    updated: str


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise UsersError(
            f"User name {name!r} is not allowed: use 1–64 letters, digits, '_', '.', '@' or '-', "
            "starting with a letter or digit."
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UsersError(f"Role {role!r} does not exist: pick one of {', '.join(ROLES)}.")
    return role


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise UsersError(f"The password is too short: use at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise UsersError(f"The password is too long: use at most {MAX_PASSWORD} characters.")
    return password


class UsersFile:
    """Users and their hashed passwords in one JSON file; safe to share between the app's threads."""

    def __init__(self, path: str | Path, hasher: PasswordHasher | None = None):
        self.path = Path(path)
        self.hasher = hasher or PasswordHasher()
        self._lock = threading.Lock()
        self._users: dict[str, dict] = {}
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file as last read
        self._dummy_hash = self.hasher.hash("not a password of anyone")  # unknown names cost a real verify

    # -- reading --------------------------------------------------------------------------------------
    def _refresh(self) -> dict[str, dict]:
        """The users as the file holds them now (re-read only when the file changed)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._users, self._seen = {}, None
            return self._users
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen != self._seen:
            self._users, self._seen = self._read(), seen
        return self._users

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise UsersError(f"Cannot read the users file {self.path}: {err}. Fix or remove it.") from err
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, dict):
            raise UsersError(f"{self.path} is not a prefloop users file (no 'users' object). Fix or remove it.")
        for name, entry in users.items():
            if not (isinstance(entry, dict) and entry.get("role") in ROLES and isinstance(entry.get("hash"), str)):
                raise UsersError(
                    f"{self.path}: user {name!r} needs a 'role' ({' or '.join(ROLES)}) and a 'hash'. "
                    "Set it again with `python -m access passwd`."
                )
        return users

    def exists(self) -> bool:
        return self.path.exists()

    def users(self) -> list[User]:
        with self._lock:
            users = self._refresh()
            return [User(n, e["role"], e.get("created", ""), e.get("updated", "")) for n, e in sorted(users.items())]

    def role(self, name: str | None) -> str | None:
        """The role of `name`, or None for no such user (a removed user loses their rights at once)."""
        if not name:
            return None
        with self._lock:
            entry = self._refresh().get(name)
        return entry["role"] if entry else None

    def changed_at(self, name: str) -> float | None:
        """When `name`'s password or role last changed (epoch seconds), or None (never, or no such user)."""
        with self._lock:
            entry = self._refresh().get(name)
        return entry.get("credentials_changed") if entry else None

    def admins(self) -> list[str]:
        return [user.name for user in self.users() if user.role == "admin"]

    def verify(self, name: str, password: str) -> bool:
        """True when `password` is `name`'s; an unknown name takes as long as a wrong password."""
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            return False
        with self._lock:
            entry = self._refresh().get(name) if isinstance(name, str) else None
        try:
            return self.hasher.verify(entry["hash"] if entry else self._dummy_hash, password) and entry is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    # -- changing -------------------------------------------------------------------------------------
    def add(self, name: str, password: str, role: str = "labeler") -> User:
        check_name(name), check_role(role), check_password(password)
        with self._lock:
            users = dict(self._refresh())
            if name in users:
                raise UsersError(f"User {name!r} exists already: reset their password with `passwd` instead.")
            now = _now()
            users[name] = {"role": role, "hash": self.hasher.hash(password), "created": now, "updated": now}
            self._write(users)
        return User(name, role, now, now)

    def set_password(self, name: str, password: str) -> None:
        check_password(password)
        new_hash = self.hasher.hash(password)
        self._change(name, lambda entry: entry | {"hash": new_hash, "credentials_changed": time.time()})

    def set_role(self, name: str, role: str) -> None:
        check_role(role)
        with self._lock:
            users = self._refresh()
            if name in users and role != "admin" and self._last_admin(users, name):
                raise UsersError(f"{name!r} is the last admin: make another user admin first.")
        changed = {"credentials_changed": time.time()}
        self._change(name, lambda entry: entry | {"role": role} | (changed if entry["role"] != role else {}))

    def remove(self, name: str) -> None:
        with self._lock:
            users = dict(self._refresh())
            if name not in users:
                raise UsersError(f"No user {name!r} in {self.path}.")
            if self._last_admin(users, name):
                raise UsersError(f"{name!r} is the last admin: make another user admin first.")
            del users[name]
            self._write(users)

    def _change(self, name: str, update) -> None:
        with self._lock:
            users = dict(self._refresh())
            if name not in users:
                raise UsersError(f"No user {name!r} in {self.path}: add them with `python -m access add`.")
            users[name] = update(dict(users[name])) | {"updated": _now()}
            self._write(users)

    @staticmethod
    def _last_admin(users: dict[str, dict], name: str) -> bool:
        admins = [n for n, entry in users.items() if entry["role"] == "admin"]
        return admins == [name]

    def _write(self, users: dict[str, dict]) -> None:
        """Replace the file whole: a temporary file in the same folder, owner-only, fsynced, renamed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": FORMAT_VERSION, "users": users}, indent=2, sort_keys=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._users, self._seen = users, None  # re-stat on the next read


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
