"""Server-side access control for the web UI: every admin handler calls `require`, and every HTTP request
passes `AccessGuard` (removed users, export downloads). Hidden buttons are a convenience; these are the control.

    handler = bind(start_round, services)         # like functools.partial, but gradio still sees gr.Request
    require(services, request, "start a round")   # gr.Error unless the request's login is an admin
    demo.launch(**launch_options(services))        # logins (when a users file is given) + the export guard

Who may do what is decided by `access.Access`, asked through `services.team`; this module only adapts it to gradio
and HTTP.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import ipaddress
import posixpath
import re
import time
import typing
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

import anyio
import gradio as gr
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse

from services import EXPORT_KINDS, AccessDenied, Services
from services.team import Team

CLIENT_ADDRESS: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_address", default=None)
EXPORT_NAME = re.compile(rf"^({'|'.join(EXPORT_KINDS)})-\d{{8}}-\d{{6}}")  # as Services.export names them
FILE_ROUTE = re.compile(r"/file[=/](?P<path>.+)$")


def bind(fn, *args):
    """`functools.partial(fn, *args)` that gradio can inspect: it injects gr.Request / gr.Progress by the
    parameters' annotations, which it cannot read through a partial, and streams generators' updates."""
    bound = functools.partial(fn, *args)
    if inspect.isgeneratorfunction(fn):  # gradio streams a generator's updates only if it can tell

        def handler(*rest, **kwargs):
            yield from bound(*rest, **kwargs)

    else:

        def handler(*rest, **kwargs):
            return bound(*rest, **kwargs)

    functools.update_wrapper(handler, fn)

    signature = inspect.signature(bound)
    hints = typing.get_type_hints(fn)
    handler.__signature__ = signature
    handler.__annotations__ = {name: hints[name] for name in signature.parameters if name in hints}
    del handler.__wrapped__  # inspect.signature must stop at __signature__, not unwrap to fn's
    return handler


def user_of(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


def require(services: Services, request: gr.Request | None, action: str) -> None:
    """Refuse `action` (gr.Error, nothing done) unless the request's user may do it."""
    try:
        services.team.require(user_of(request), action)
    except AccessDenied as err:
        raise gr.Error(str(err)) from err


def is_admin(services: Services, request: gr.Request | None) -> bool:
    """Whether the request's user is an admin (everyone is, with logins off): what a view may show."""
    return services.team.role(user_of(request)) == "admin"


def labeler(services: Services, request: gr.Request | None, typed: str | None = None) -> str:
    """The name a vote is stored under: the login when logins are on (the typed name is ignored)."""
    try:
        return services.team.labeler(user_of(request), typed)
    except AccessDenied as err:
        raise gr.Error(str(err)) from err


class AccessGuard:
    """ASGI middleware, with logins on: a session whose user was removed from the users file is logged out at
    its next request (401), and a file route serving an export (by its name, or from the exports folder)
    answers 403 unless the session is an admin's. Without logins everything passes, as before."""

    def __init__(self, app, team: Team, exports_dir: Path):
        self.app, self.team, self.exports_dir = app, team, exports_dir.resolve()
        self.logged_in: dict[str, float] = {}  # session token -> when its login succeeded (epoch seconds)

    def is_export(self, path: str) -> bool:
        target = Path(path)
        if EXPORT_NAME.match(target.name):
            return True
        try:
            return target.resolve().is_relative_to(self.exports_dir)
        except (OSError, ValueError):
            return False

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.team.logins:
            address = (scope.get("client") or ("", 0))[0]
            CLIENT_ADDRESS.set(address)  # the login route runs in this context: its auth reads it
            login = scope.get("method") == "POST" and scope.get("path", "").rstrip("/").endswith("/login")
            wait = self.team.login_wait_s(address) if login else 0
            if wait > 0:
                message = f"Too many failed logins from this address: try again in {wait:.0f} s."
                headers = {"Retry-After": str(max(1, round(wait)))}
                await JSONResponse({"detail": message}, status_code=429, headers=headers)(scope, receive, send)
                return
            refusal = self.refusal(scope)
            if refusal is not None:
                status, message = refusal
                await JSONResponse({"detail": message}, status_code=status)(scope, receive, send)
                return
            if login:
                send = self.noting_logins(send)
        await self.app(scope, receive, send)

    def noting_logins(self, send):
        """`send`, noting the session token a successful login sets, and when."""

        async def noting(message):
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", []):
                    if name.lower() == b"set-cookie" and value.startswith(b"access-token-"):
                        token = value.split(b";", 1)[0].split(b"=", 1)[1].decode()
                        self.logged_in[token] = time.time()
            await send(message)

        return noting

    def refusal(self, scope) -> tuple[int, str] | None:
        app = scope.get("app")
        tokens, cookie_id = getattr(app, "tokens", {}), getattr(app, "cookie_id", "")
        cookies = HTTPRequest(scope).cookies
        token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
        user = tokens.get(token)
        role = self.team.role(user)
        if user is not None and role is None:  # removed from the users file since logging in
            tokens.pop(token, None)
            return 401, f"User {user!r} no longer exists: ask an admin for a login."
        if user is not None:
            now = time.time()
            ended = self.team.session_ended(user, self.logged_in.setdefault(token, now), now)
            if ended:
                tokens.pop(token, None)
                self.logged_in.pop(token, None)
                return 401, ended
        if role != "admin" and any(self.is_export(path) for path in file_paths(scope.get("path", ""))):
            return 403, "Export downloads need an admin's login: log in as an admin and export again."
        return None


def file_paths(route: str) -> set[str]:
    """The paths a file route may serve: as requested, with dot segments resolved (gradio serves the normalized
    path, so `…/export.jsonl/x/..` is the export itself) and with any percent-encoding left undone."""
    seen, path = set(), route
    while path not in seen:
        seen.add(path)
        path = unquote(path)
    found = set()
    for candidate in seen:
        for form in (candidate, posixpath.normpath(candidate)):
            match = FILE_ROUTE.search(form)
            if match:
                found.update({match["path"], posixpath.normpath(match["path"])})
    return found


class OriginGuard:
    """ASGI middleware, logins on or off: a request whose Host is not this app's (DNS rebinding: a page on
    evil.example whose name now points at this machine) or whose Origin is another site's (a page on another site
    using the visitor's session, cross-site request forgery) gets 403 before anything runs. Hosts: IP addresses,
    localhost, and `allowed_hosts` (with the hosts of `allowed_origins`). Origins: the app's own (the Host it was
    reached on) and `allowed_origins` (e.g. https://prefloop.example.org behind a TLS reverse proxy). Requests
    without an Origin (API clients, the browser's own navigation) pass."""

    def __init__(self, app, allowed_origins: Sequence[str] = (), allowed_hosts: Sequence[str] = ()):
        self.app = app
        self.origins = {o.rstrip("/").lower() for o in allowed_origins}
        self.hosts = {h.lower() for h in allowed_hosts} | {urlsplit(o).hostname or "" for o in self.origins}

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            headers = Headers(scope=scope)
            refusal = refuse_origin(headers.get("host", ""), headers.get("origin"), self.hosts, self.origins)
            if refusal is not None:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await JSONResponse({"detail": refusal}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def refuse_origin(host: str, origin: str | None, hosts: set[str], origins: set[str]) -> str | None:
    """Why a request with these Host and Origin headers is refused (see OriginGuard), or None."""
    name = host_name(host)
    if not (name == "localhost" or is_ip_address(name) or name in hosts):
        return (
            f"This app does not answer to the name {name!r}. Reach it by its IP address, or start it with "
            f"--allowed-hosts {name} (or --allowed-origins with that name's URL)."
        )
    if origin is None:
        return None
    origin = origin.rstrip("/").lower()
    if origin in origins or origin in (f"http://{host.lower()}", f"https://{host.lower()}"):
        return None
    return (
        f"Requests from the page {origin!r} are not allowed: use the app from its own address, or start it with "
        f"--allowed-origins {origin}."
    )


def host_name(host: str) -> str:
    """The name in a Host header, without its port ('[::1]:7860' -> '::1')."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def launch_options(services: Services, allowed_origins: Sequence[str] = (), allowed_hosts: Sequence[str] = ()) -> dict:
    """`demo.launch` keywords for access: the origin and host guard and the export guard always, a login page
    when logins are on."""
    exports = services.exports.folder.resolve()
    options = {
        "allowed_paths": [str(exports)],  # exports may live outside the working folder
        "app_kwargs": {
            "middleware": [
                Middleware(OriginGuard, allowed_origins=allowed_origins, allowed_hosts=allowed_hosts),
                Middleware(AccessGuard, team=services.team, exports_dir=exports),
            ]
        },
    }
    if services.team.logins:

        async def login(name: str, password: str) -> bool:  # Argon2 takes ~0.1 s: off the event loop
            address = CLIENT_ADDRESS.get()
            return await anyio.to_thread.run_sync(services.team.login, name, password, address)

        options |= {"auth": login, "auth_message": "prefloop: log in with the name and password an admin gave you."}
    return options
