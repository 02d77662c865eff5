"""The Team tab (logins on, admins only): who may log in, add a labeler, reset a password, change a role.

Built by `ui.build_demo` when the app runs with --users; every handler refuses non-admins on the server.
API names: /users, /add_user, /reset_password, /set_role, /remove_user. The same file is managed from a shell
with `python -m access` (the app re-reads it on the next request).
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from services import ROLES, Services, UsersError
from ui import guard
from ui.guard import bind

COLUMNS = ("name", "role", "since", "changed")


def users(services: Services, request: gr.Request) -> pd.DataFrame:
    guard.require(services, request, "manage users")
    rows = [(u.name, u.role, u.created, u.updated) for u in services.team.users()]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _change(services: Services, request: gr.Request, change, done: str) -> tuple[pd.DataFrame, str]:
    guard.require(services, request, "manage users")
    try:
        change(services.team)
    except UsersError as err:
        raise gr.Error(str(err)) from err
    return users(services, request), done, ""  # the password box is emptied


def add_user(services: Services, name: str, role: str, password: str, request: gr.Request) -> tuple:
    name = (name or "").strip()
    return _change(services, request, lambda t: t.add_user(name, password, role), f"Added {role} **{name}**.")


def reset_password(services: Services, name: str, password: str, request: gr.Request) -> tuple:
    name = (name or "").strip()
    return _change(services, request, lambda t: t.set_password(name, password), f"New password set for **{name}**.")


def set_role(services: Services, name: str, role: str, request: gr.Request) -> tuple:
    name = (name or "").strip()
    return _change(services, request, lambda t: t.set_role(name, role), f"**{name}** is now {role}.")


def remove_user(services: Services, name: str, request: gr.Request) -> tuple:
    name = (name or "").strip()
    return _change(services, request, lambda t: t.remove_user(name), f"Removed **{name}**; their votes stay.")


def build(services: Services, tab_block: gr.Tab) -> None:
    """The tab's widgets and events, inside `with gr.Tab(...)`."""
    table = gr.Dataframe(headers=list(COLUMNS), label="Users", interactive=False)
    with gr.Row():
        name = gr.Textbox(label="Name", max_lines=1)
        role = gr.Radio(list(ROLES), value="labeler", label="Role")
        password = gr.Textbox(label="Password (at least 8 characters)", type="password", max_lines=1)
    with gr.Row():
        add = gr.Button("Add user", variant="primary")
        reset = gr.Button("Set password")
        change_role = gr.Button("Set role")
        remove = gr.Button("Remove user", variant="stop")
    message = gr.Markdown()
    outputs = [table, message, password]
    add.click(bind(add_user, services), [name, role, password], outputs, api_name="add_user")
    reset.click(bind(reset_password, services), [name, password], outputs, api_name="reset_password")
    change_role.click(bind(set_role, services), [name, role], outputs, api_name="set_role")
    remove.click(bind(remove_user, services), [name], outputs, api_name="remove_user")
    tab_block.select(bind(users, services), None, table, api_name="users")
