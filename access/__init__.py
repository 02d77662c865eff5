"""Who may do what: optional logins, and two roles, labeler and admin.

    access = Access.from_file("users.json")     # logins on; Access.open() is one person on their own machine
    access.login("ada", "a long passphrase")     # True / False
    access.require("bob", "start a round")       # raises AccessDenied: bob is a labeler
    access.labeler("bob", typed="anything")      # "bob": with logins on, the name comes from the login

With logins off (no users file) everyone who can reach the app is an admin, as on one person's machine.
Labelers label: vote, rate, add a prompt, compare versions. Admins also start and cancel rounds, serve or roll
back a version, import prompts, export, change sampling settings, edit the guidelines and manage users
(ADMIN_ACTIONS).

    python -m access --users users.json add ada --role admin    # asks for the password twice
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from access.throttle import LoginThrottle
from access.users import MIN_PASSWORD, ROLES, User, UsersError, UsersFile

ADMIN_ACTIONS = (
    "start a round",
    "cancel a round",
    "serve a version",
    "import prompts",
    "export labels",
    "change sampling settings",
    "edit guidelines",
    "manage users",
    "audit labels",
    "set second looks",
    "hold out prompts",
    "give held-out prompts back",
    "choose whether rounds are reviewed before serving",
)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def labeler_name(typed: str | None) -> str:
    """The name a label is stored under without logins: as typed, trimmed; "anonymous" when empty."""
    return (typed or "").strip() or "anonymous"


class AccessDenied(PermissionError):
    """A request its user may not make; the message says who may."""


@dataclass(frozen=True)
class Access:
    users: UsersFile | None = None  # None: logins off
    throttle: LoginThrottle = field(default_factory=LoginThrottle, compare=False)
    session_hours: float = 12.0  # a login lasts this long (logins on)

    @classmethod
    def open(cls) -> Access:
        return cls(None)

    @classmethod
    def from_file(cls, path: str | Path, session_hours: float = 12.0) -> Access:
        """Logins on, from `path`, which must name at least one admin (else nobody could run a round)."""
        users = UsersFile(path)
        if not users.exists():
            raise UsersError(
                f"No users file at {path}. Create it with its first admin: "
                f"python -m access --users {path} add NAME --role admin"
            )
        if not users.admins():
            raise UsersError(f"{path} names no admin. Make one: python -m access --users {path} role NAME admin")
        return cls(users, session_hours=session_hours)

    @property
    def logins(self) -> bool:
        return self.users is not None

    def login(self, name: str, password: str, address: str | None = None) -> bool:
        """Whether `password` is `name`'s. While `name` or `address` has failed too often lately (LoginThrottle)
        the answer is False at once, without hashing: wait and try again."""
        if self.users is None:
            return False
        keys = [f"name:{name}"] + ([f"address:{address}"] if address else [])
        if any(self.throttle.wait_s(key) > 0 for key in keys):
            return False
        ok = self.users.verify(name, password)
        for key in keys:
            (self.throttle.succeeded if ok else self.throttle.failed)(key)
        return ok

    def session_ended(self, user: str, logged_in_at: float, now: float) -> str | None:
        """Why the session `user` started at `logged_in_at` (epoch seconds) is over by `now`, or None: it ran
        `session_hours`, or the user's password or role changed since."""
        if now - logged_in_at > self.session_hours * 3600:
            return f"Your session ended after {self.session_hours:g} hours: log in again."
        changed = self.users.changed_at(user) if self.users is not None else None
        if changed is not None and changed >= logged_in_at:
            return "Your password or role changed since you logged in: log in again."
        return None

    def login_wait_s(self, address: str) -> float:
        """Seconds until `address` may try to log in again (0: now)."""
        return self.throttle.wait_s(f"address:{address}")

    def role(self, user: str | None) -> str | None:
        """`user`'s role now; with logins off everyone is an admin."""
        if self.users is None:
            return "admin"
        return self.users.role(user)

    def require(self, user: str | None, action: str) -> None:
        """Raise AccessDenied unless `user` may do `action` (one of ADMIN_ACTIONS, or a labeler's action)."""
        role = self.role(user)
        if role is None:
            raise AccessDenied(f"Log in to {action}.")
        if action in ADMIN_ACTIONS and role != "admin":
            raise AccessDenied(f"Only an admin can {action}; {user!r} is a {role}. Ask an admin.")

    def labeler(self, user: str | None, typed: str | None = None) -> str:
        """The name a judgement is stored under: the login's when logins are on, else what was typed."""
        if self.users is not None:
            self.require(user, "label")
            return str(user)
        return labeler_name(typed)


def exposure_warning(host: str, access: Access) -> str | None:
    """A warning when the app listens beyond this machine with nobody having to log in."""
    if access.logins or host in LOOPBACK_HOSTS:
        return None
    return (
        f"WARNING: prefloop listens on {host} without logins: anyone who can reach this port can label, "
        "start rounds, serve versions and download every label. Start it with --users FILE "
        "(create it with: python -m access --users FILE add NAME --role admin)."
    )


__all__ = [
    "ADMIN_ACTIONS",
    "MIN_PASSWORD",
    "ROLES",
    "Access",
    "AccessDenied",
    "User",
    "UsersError",
    "UsersFile",
    "exposure_warning",
    "labeler_name",
]
