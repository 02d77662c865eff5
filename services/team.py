"""The team: who may log in and do what (access/'s users file and roles), as the UI and its HTTP guard ask.

team = Team(access)
team.require(user, "start a round")     # AccessDenied unless `user` is an admin (logins off: everyone is)
team.add_user("bob", "a long password", "labeler")
"""

from __future__ import annotations

from access import Access, User


class Team:
    def __init__(self, access: Access):
        self.access = access

    @property
    def logins(self) -> bool:
        """Whether people log in (a users file was given); without, everyone is an admin."""
        return self.access.logins

    def role(self, user: str | None) -> str | None:
        return self.access.role(user)

    def require(self, user: str | None, action: str) -> None:
        self.access.require(user, action)

    def labeler(self, user: str | None, typed: str | None = None) -> str:
        return self.access.labeler(user, typed)

    def login(self, name: str, password: str, address: str | None = None) -> bool:
        return self.access.login(name, password, address)

    def login_wait_s(self, address: str) -> float:
        return self.access.login_wait_s(address)

    def session_ended(self, user: str, logged_in_at: float, now: float) -> str | None:
        return self.access.session_ended(user, logged_in_at, now)

    # -- the users file -------------------------------------------------------------------------------
    def users(self) -> list[User]:
        return self.access.users.users()

    def add_user(self, name: str, password: str, role: str) -> None:
        self.access.users.add(name, password, role)

    def set_password(self, name: str, password: str) -> None:
        self.access.users.set_password(name, password)

    def set_role(self, name: str, role: str) -> None:
        self.access.users.set_role(name, role)

    def remove_user(self, name: str) -> None:
        self.access.users.remove(name)
