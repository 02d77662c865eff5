"""Logins and roles without a server: the users file, who may do what, the CLI, the export guard's rule."""

import json
import os
import stat
import subprocess
import sys
import time

import pytest
from argon2 import PasswordHasher
from helpers import REPO

from access import ADMIN_ACTIONS, Access, AccessDenied, UsersError, UsersFile, exposure_warning
from access.__main__ import main as access_cli

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # the same Argon2id, cheap for tests


@pytest.fixture
def users(tmp_path):
    users = UsersFile(tmp_path / "users.json", hasher=FAST)
    users.add("ada", "correct horse", role="admin")
    users.add("bob", "battery staple")
    return users


def test_passwords_are_stored_hashed_and_verified(users):
    text = users.path.read_text()
    assert "correct horse" not in text and "battery staple" not in text
    assert json.loads(text)["users"]["ada"]["hash"].startswith("$argon2id$")
    assert users.verify("ada", "correct horse") and users.verify("bob", "battery staple")
    assert not users.verify("ada", "battery staple") and not users.verify("nobody", "correct horse")
    assert not users.verify("ada", "x" * 5000)
    assert stat.S_IMODE(os.stat(users.path).st_mode) == 0o600, "readable by its owner only"


def test_bad_names_passwords_and_roles_are_refused_and_change_nothing(users):
    before = users.path.read_bytes()
    with pytest.raises(UsersError, match="at least 8"):
        users.add("carol", "short")
    with pytest.raises(UsersError, match="not allowed"):
        users.add("../etc", "long enough")
    with pytest.raises(UsersError, match="pick one of labeler, admin"):
        users.add("carol", "long enough", role="root")
    with pytest.raises(UsersError, match="exists already"):
        users.add("bob", "long enough")
    with pytest.raises(UsersError, match="No user 'carol'"):
        users.set_password("carol", "long enough")
    assert users.path.read_bytes() == before


def test_the_last_admin_cannot_be_removed_or_demoted(users):
    with pytest.raises(UsersError, match="last admin"):
        users.remove("ada")
    with pytest.raises(UsersError, match="last admin"):
        users.set_role("ada", "labeler")
    users.set_role("bob", "admin")
    users.set_role("ada", "labeler")
    assert users.role("ada") == "labeler" and users.admins() == ["bob"]


def test_a_reset_password_replaces_the_old_one_and_a_removed_user_loses_access_at_once(users):
    users.set_password("bob", "a new passphrase")
    assert users.verify("bob", "a new passphrase") and not users.verify("bob", "battery staple")
    access = Access(users)
    access.require("bob", "label")
    users.remove("bob")
    with pytest.raises(AccessDenied, match="Log in"):
        access.require("bob", "label")


def test_changes_made_by_another_process_are_seen_without_a_restart(users):
    """The app holds one UsersFile; `python -m access` changes the file from a shell."""
    assert users.role("carol") is None
    UsersFile(users.path, hasher=FAST).add("carol", "long enough")
    assert users.role("carol") == "labeler" and users.verify("carol", "long enough")


def test_a_damaged_users_file_says_what_to_do(tmp_path):
    path = tmp_path / "users.json"
    path.write_text("{not json")
    with pytest.raises(UsersError, match="Cannot read the users file"):
        UsersFile(path).users()
    path.write_text(json.dumps({"users": {"ada": {"role": "root", "hash": "x"}}}))
    with pytest.raises(UsersError, match="needs a 'role'"):
        UsersFile(path).users()


def test_labelers_may_label_and_only_admins_may_do_admin_actions(users):
    access = Access(users)
    for action in ADMIN_ACTIONS:
        access.require("ada", action)
        with pytest.raises(AccessDenied, match=f"Only an admin can {action}; 'bob' is a labeler"):
            access.require("bob", action)
        with pytest.raises(AccessDenied, match="Log in"):
            access.require(None, action)
    access.require("bob", "label")
    assert access.labeler("bob", typed="someone else") == "bob", "the login names the labeler, not a text box"
    with pytest.raises(AccessDenied):
        access.labeler(None, typed="ada")


def test_without_logins_everyone_is_an_admin_and_names_are_typed():
    access = Access.open()
    for action in ADMIN_ACTIONS:
        access.require(None, action)
    assert access.labeler(None, " ann ") == "ann" and access.labeler(None, "") == "anonymous"


def test_logins_need_a_users_file_with_an_admin(tmp_path):
    with pytest.raises(UsersError, match="python -m access --users .* add NAME --role admin"):
        Access.from_file(tmp_path / "missing.json")
    labelers_only = UsersFile(tmp_path / "users.json", hasher=FAST)
    labelers_only.add("bob", "battery staple")
    with pytest.raises(UsersError, match="names no admin"):
        Access.from_file(labelers_only.path)


def test_listening_on_the_network_without_logins_warns(users):
    assert "without logins" in exposure_warning("0.0.0.0", Access.open())
    assert exposure_warning("127.0.0.1", Access.open()) is None
    assert exposure_warning("0.0.0.0", Access(users)) is None


def test_the_cli_adds_resets_and_lists_users_with_users_after_the_subcommand(tmp_path, monkeypatch, capsys):
    import io

    path = tmp_path / "team" / "users.json"
    monkeypatch.setattr(sys, "stdin", io.StringIO("first password\n"))
    assert access_cli(["add", "ada", "--role", "admin", "--password-stdin", "--users", str(path)]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("second password\n"))
    assert access_cli(["--users", str(path), "passwd", "ada", "--password-stdin"]) == 0
    assert UsersFile(path).verify("ada", "second password")
    monkeypatch.setattr(sys, "stdin", io.StringIO("tiny\n"))
    assert access_cli(["--users", str(path), "add", "bob", "--password-stdin"]) == 2
    assert "at least 8" in capsys.readouterr().err
    assert access_cli(["--users", str(path), "list"]) == 0
    assert capsys.readouterr().out.startswith("ada\tadmin")


def test_the_cli_runs_as_a_module(tmp_path):
    path = tmp_path / "users.json"
    done = subprocess.run(
        [sys.executable, "-m", "access", "--users", str(path), "add", "ada", "--role", "admin", "--password-stdin"],
        input="a long passphrase\n",
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert UsersFile(path).role("ada") == "admin"


def test_the_export_guard_knows_exports_by_name_and_folder(tmp_path):
    pytest.importorskip("gradio")
    from services.team import Team
    from ui.guard import FILE_ROUTE, AccessGuard

    guard = AccessGuard(None, Team(Access.open()), tmp_path / "exports")
    assert guard.is_export("/tmp/gradio/0a1b/pairs-20261129-101500.jsonl")
    assert guard.is_export("/tmp/gradio/0a1b/unpaired-20261129-101500.zip")
    assert guard.is_export(str(tmp_path / "exports" / "renamed.jsonl"))
    assert not guard.is_export("/tmp/gradio/0a1b/prompts.jsonl")
    match = FILE_ROUTE.search("/gradio_api/file=/tmp/gradio/0a1b/pairs-20261129-101500.jsonl")
    assert match["path"] == "/tmp/gradio/0a1b/pairs-20261129-101500.jsonl"


def test_the_export_guard_judges_the_path_gradio_serves_not_the_one_asked_for():
    pytest.importorskip("gradio")
    from ui.guard import file_paths

    export = "/tmp/gradio/0a1b/pairs-20261129-101500.jsonl"
    for route in (
        f"/gradio_api/file={export}/x/..",  # the ASGI path, already percent-decoded once
        f"/gradio_api/file={export}/x/%2e%2e",  # encoded twice
        f"/gradio_api/file={export}/./",
        "/gradio_api/file=/tmp/gradio/0a1b/other/../pairs-20261129-101500.jsonl",
    ):
        assert export in file_paths(route), route
    assert file_paths("/gradio_api/info") == set()


def test_failed_logins_slow_down_after_a_few_and_a_success_forgets_them():
    from access.throttle import FREE_FAILURES, LoginThrottle, delay_s

    assert [delay_s(n) for n in range(FREE_FAILURES + 4)] == [0.0] * FREE_FAILURES + [1.0, 2.0, 4.0, 8.0]
    assert delay_s(100) == 900.0
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(FREE_FAILURES):
        assert throttle.wait_s("name:bob") == 0.0
        throttle.failed("name:bob")
    assert throttle.wait_s("name:bob") == 1.0 and throttle.wait_s("name:ada") == 0.0
    now[0] += 1.0
    throttle.failed("name:bob")
    assert throttle.wait_s("name:bob") == 2.0
    throttle.succeeded("name:bob")
    assert throttle.wait_s("name:bob") == 0.0
    for _ in range(FREE_FAILURES + 3):
        throttle.failed("name:eve")
    now[0] += 3601.0  # an hour later the old failures are forgotten
    throttle.failed("name:eve")
    assert throttle.wait_s("name:eve") == 0.0


def test_a_throttled_login_is_refused_before_any_hash_is_computed(users, monkeypatch):
    from access.throttle import FREE_FAILURES

    hashed, verify = [], users.hasher.verify

    class Counting:  # the real Argon2 hasher, counted
        def verify(self, *args):
            hashed.append(1)
            return verify(*args)

    monkeypatch.setattr(users, "hasher", Counting())
    access = Access(users)
    for _ in range(FREE_FAILURES):
        assert not access.login("bob", "wrong password", "10.0.0.9")
    assert len(hashed) == FREE_FAILURES
    assert not access.login("bob", "battery staple", "10.0.0.7"), "bob's name waits, from any address"
    assert not access.login("ada", "correct horse", "10.0.0.9"), "the address waits, for any name"
    assert len(hashed) == FREE_FAILURES, "no hash while throttled"
    assert access.login("ada", "correct horse", "10.0.0.8") and len(hashed) == FREE_FAILURES + 1


def test_a_session_ends_when_the_password_or_role_changes_or_after_its_hours(users):
    access = Access(users, session_hours=2.0)
    before = time.time() - 1
    assert access.session_ended("bob", before, time.time()) is None
    users.set_password("bob", "a new staple")
    assert "password or role changed" in access.session_ended("bob", before, time.time())
    after = time.time()
    assert access.session_ended("bob", after, after) is None, "a login after the change stands"
    users.set_role("ada", "admin")  # no change: sessions stand
    assert access.session_ended("ada", before, time.time()) is None
    users.set_role("bob", "admin")
    assert "password or role changed" in access.session_ended("bob", after, time.time())
    ended = access.session_ended("ada", before, before + 2 * 3600 + 1)
    assert ended == "Your session ended after 2 hours: log in again."


def test_hosts_and_origins_other_than_the_apps_own_are_refused():
    pytest.importorskip("gradio")
    from ui.guard import host_name, refuse_origin

    assert [host_name(h) for h in ("127.0.0.1:7860", "[::1]:7860", "::1", "Box.Local:80", "localhost")] == [
        "127.0.0.1", "::1", "::1", "box.local", "localhost"
    ]  # fmt: skip
    ok = dict(hosts={"prefloop.example.org"}, origins={"https://prefloop.example.org"})
    for host in ("127.0.0.1:7860", "192.168.1.20:7860", "[::1]:7860", "localhost:7860", "prefloop.example.org"):
        assert refuse_origin(host, None, **ok) is None, host
    assert "does not answer to the name 'evil.example'" in refuse_origin("evil.example:7860", None, **ok)
    assert refuse_origin("192.168.1.20:7860", "http://192.168.1.20:7860", **ok) is None, "its own page"
    assert refuse_origin("127.0.0.1:7860", "https://prefloop.example.org", **ok) is None, "behind a proxy"
    for origin in ("http://evil.example", "null", "http://127.0.0.1:9999"):
        assert "--allowed-origins" in refuse_origin("127.0.0.1:7860", origin, **ok), origin
