"""Logins and roles on the launched app, driven through gradio_client as anonymous, labeler and admin users.

Every admin route refuses a labeler on the server and changes nothing; anonymous calls do not get in; votes
carry the login; export downloads need an admin's session.
"""

import re
import time
from pathlib import Path

import httpx
import pytest

gradio_client = pytest.importorskip("gradio_client")

from argon2 import PasswordHasher  # noqa: E402 (after the skip)
from helpers import PROMPT, launch  # noqa: E402

from access import UsersFile  # noqa: E402
from storage import Store  # noqa: E402

pytestmark = pytest.mark.slow  # launches the app, a round's process or a benchmark

ADMIN, LABELER = ("ada", "admin passphrase"), ("bob", "labeler passphrase")
# Each admin route with arguments that would change something if it were let through.
ADMIN_CALLS = {
    "/start_round": {"epochs": 1},
    "/cancel_round": {},
    "/serve": ("base",),
    "/export": ("jsonl", "pairs"),
    "/apply_settings": (0.5, 0.5, 16),
    "/import_prompts": None,  # a file, made by the test
    "/save_guidelines": ("Prefer whatever bob likes.",),
    "/users": (),
    "/add_user": ("eve", "admin", "eve passphrase"),
    "/reset_password": ("ada", "hijacked passphrase"),
    "/set_role": ("bob", "admin"),
    "/remove_user": ("ada",),
    "/arena_hold_out": (5,),
    "/arena_give_back": (),
    "/arena_import_held_out": None,  # a file, made by the test
    "/audit": (),
    "/set_second_look_share": (1.0,),
    "/set_review": (True,),
}
LABELER_ROUTES = {
    "/next_pair",
    "/vote_left",
    "/vote_right",
    "/vote_tie",
    "/vote_both_bad",
    "/vote_skip",
    "/rate_up",
    "/rate_down",
    "/rate_skip",
    "/add_prompt",
    "/queue_status",
    "/round_status",
    "/stored_prompts",
    "/compare",
    "/undo",
    "/save_edit",
    "/counters",
    "/guidelines",
    "/arena_next",
    "/arena_vote_a",
    "/arena_vote_b",
    "/arena_vote_tie",
    "/arena_vote_both_bad",
    "/arena_latest",
    "/arena_results",
    "/arena_checks",
    "/round_review",
    "/selection_report",
    "/arena_candidate",
}


def open_team_app(tiny_model_dir, work: Path):
    users = UsersFile(work / "users.json", hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users.add(*ADMIN, role="admin")
    users.add(*LABELER, role="labeler")
    args = ("--users", str(users.path), "--host", "0.0.0.0", "--max-upload-mb", "1")
    for admin, proc in launch(tiny_model_dir, work, args=args, auth=ADMIN):
        admin.predict(0.8, 0.95, 8, api_name="/apply_settings")
        yield admin, proc, work, admin.src


@pytest.fixture(scope="module")
def team_app(tiny_model_dir, tmp_path_factory):
    """An app with logins the tests share; none of them relies on what another did in it."""
    yield from open_team_app(tiny_model_dir, tmp_path_factory.mktemp("team"))


@pytest.fixture
def team_app_alone(tiny_model_dir, tmp_path):
    """An app with logins for one test, which stops it to read its database."""
    yield from open_team_app(tiny_model_dir, tmp_path)


def call(client, route: str, arguments):
    if isinstance(arguments, dict):
        return client.predict(**arguments, api_name=route)
    return client.predict(*arguments, api_name=route)


def test_anonymous_visitors_get_no_page_and_no_api(team_app):
    _, _, work, url = team_app
    with pytest.raises(Exception):  # noqa: B017 (gradio_client raises its own kinds for a refused config)
        gradio_client.Client(url, verbose=False)
    with pytest.raises(Exception):  # noqa: B017
        gradio_client.Client(url, verbose=False, auth=("bob", "wrong password"))
    assert httpx.get(f"{url}gradio_api/info").status_code in (401, 403)
    assert "without logins" not in (work / "app.log").read_text(), "logins on: no network warning"


def test_every_route_is_either_a_labelers_or_refused_to_labelers(team_app):
    admin, _, _, url = team_app
    routes = set(admin.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert routes == LABELER_ROUTES | set(ADMIN_CALLS), "a new route needs a decision: labeler or admin"


def test_a_labeler_is_refused_every_admin_route_and_nothing_changes(team_app):
    admin, _, work, url = team_app
    labeler = gradio_client.Client(url, verbose=False, auth=LABELER)
    prompts_file = work / "more.txt"
    prompts_file.write_text("A prompt a labeler wants in.\n")
    upload = (gradio_client.handle_file(str(prompts_file)),)
    calls = dict(ADMIN_CALLS) | {"/import_prompts": upload, "/arena_import_held_out": upload}
    for route in calls:
        with pytest.raises(Exception, match=r"Only an admin can .*'bob' is a labeler"):
            call(labeler, route, calls[route])
    assert not list((work / "exports").glob("*")), "no export was written"
    assert not (work / "runs").exists() or not list((work / "runs").glob("*round_*")), "no round started"
    users = admin.predict(api_name="/users")
    assert [(row[0], row[1]) for row in users["data"]] == [("ada", "admin"), ("bob", "labeler")]
    gradio_client.Client(url, verbose=False, auth=ADMIN)  # ada's password still works
    assert admin.predict(api_name="/arena_give_back").startswith("Gave 0 prompts back"), "none held out"
    assert "Serving **base**" in admin.predict(api_name="/round_status")[4]
    assert admin.predict(api_name="/round_review")[0] is False, "rounds still serve as they finish"


def test_a_labelers_votes_carry_their_login_not_a_typed_name(team_app_alone):
    admin, proc, work, url = team_app_alone
    labeler = gradio_client.Client(url, verbose=False, auth=LABELER)
    ids = []
    for choice in ("left", "right"):
        labeler.predict(api_name="/next_pair")
        saved = labeler.predict("ada", api_name=f"/vote_{choice}")[0]  # claims to be ada
        ids.append(int(saved.split("#")[1].split()[0]))
    labeler.predict(api_name="/next_pair")
    assert labeler.predict("ada", api_name="/rate_up")  # 'Rate one' mode stores the login too
    admin.predict(api_name="/next_pair")
    ids.append(int(admin.predict("", api_name="/vote_left")[0].split("#")[1].split()[0]))
    proc.kill()  # the file, read once the app has stopped
    proc.wait()
    with Store(work / "loop.duckdb") as store:
        judged = {j.id: j.labeler for j in store.judgements.list()}
        ratings = [r.labeler for r in store.ratings.list()]
    bob_first, bob_second, ada = ids
    assert judged[bob_first] == judged[bob_second] == "bob" and judged[ada] == "ada"
    assert ratings == ["bob"]


def test_export_downloads_need_an_admins_session(team_app):
    admin, _, work, url = team_app
    admin.predict(api_name="/next_pair")
    admin.predict("", api_name="/vote_left")  # a pair to export, whatever the other tests voted
    raw_admin = gradio_client.Client(url, verbose=False, auth=ADMIN, download_files=False)
    exported, message = raw_admin.predict("jsonl", "pairs", api_name="/export")
    pairs = int(re.search(r"Exported (\d+) pairs", message).group(1))
    assert pairs >= 1, message
    link = exported["url"]
    labeler = gradio_client.Client(url, verbose=False, auth=LABELER)
    as_labeler = httpx.get(link, cookies=labeler.cookies)
    assert as_labeler.status_code == 403 and "admin" in as_labeler.json()["detail"]
    assert httpx.get(link).status_code in (401, 403), "no session, no file"
    for detour in ("/x/%2e%2e", "/x/%252e%252e", "/./"):  # gradio serves the normalized path: so must the guard
        assert httpx.get(link + detour, cookies=labeler.cookies).status_code == 403, detour
    as_admin = httpx.get(link, cookies=raw_admin.cookies)
    assert as_admin.status_code == 200 and len(as_admin.text.splitlines()) == pairs
    # The exports folder itself is no way around it, under any name.
    written = next((work / "exports").glob("pairs-*.jsonl"))
    renamed = written.rename(written.with_name("renamed.jsonl"))
    folder_link = f"{url}gradio_api/file={renamed.resolve()}"
    assert httpx.get(folder_link, cookies=labeler.cookies).status_code == 403
    assert httpx.get(folder_link, cookies=raw_admin.cookies).status_code == 200


def test_an_admin_manages_users_from_the_team_tab(team_app):
    admin, _, _, url = team_app
    table, message, password_box = admin.predict("carol", "labeler", "carol passphrase", api_name="/add_user")
    assert "Added labeler **carol**" in message and ["carol", "labeler"] == table["data"][2][:2]
    assert password_box == "", "the password does not stay on screen"
    carol = gradio_client.Client(url, verbose=False, auth=("carol", "carol passphrase"))
    assert carol.predict(api_name="/next_pair")[0].startswith(PROMPT)
    with pytest.raises(Exception, match="at least 8"):
        admin.predict("carol", "short", api_name="/reset_password")
    admin.predict("carol", "carol's new passphrase", api_name="/reset_password")
    ended = httpx.get(f"{url}gradio_api/info", cookies=carol.cookies)  # her session from before the reset
    assert ended.status_code == 401 and "password or role changed" in ended.json()["detail"]
    with pytest.raises(Exception):  # noqa: B017
        gradio_client.Client(url, verbose=False, auth=("carol", "carol passphrase"))
    carol = gradio_client.Client(url, verbose=False, auth=("carol", "carol's new passphrase"))
    assert carol.predict(api_name="/next_pair")[0].startswith(PROMPT)
    admin.predict("carol", "admin", api_name="/set_role")
    assert httpx.get(f"{url}gradio_api/info", cookies=carol.cookies).status_code == 401, "a role change ends it too"
    carol = gradio_client.Client(url, verbose=False, auth=("carol", "carol's new passphrase"))
    admin.predict("carol", api_name="/remove_user")
    with pytest.raises(Exception):  # noqa: B017 (logged out at her next request)
        carol.predict(api_name="/next_pair")


def test_a_labeler_may_pick_versions_and_see_arena_results(team_app):
    _, _, _, url = team_app
    labeler = gradio_client.Client(url, verbose=False, auth=LABELER)
    with pytest.raises(Exception, match="only the base: train a round first"):  # not an admin refusal
        labeler.predict(api_name="/arena_latest")
    assert labeler.predict(api_name="/arena_results")[0].startswith("**0 voted battles.**")


def test_labelers_see_neither_held_out_prompts_nor_why_a_round_failed(team_app):
    admin, _, _, url = team_app
    labeler = gradio_client.Client(url, verbose=False, auth=LABELER)

    def listed(client) -> list[str]:
        choices = client.predict(api_name="/stored_prompts")["choices"]
        return [c[0] if isinstance(c, (list, tuple)) else c for c in choices]

    admin.predict(4, api_name="/arena_hold_out")
    everything, labelers = listed(admin), listed(labeler)
    assert len(everything) - len(labelers) == 4 and set(labelers) < set(everything), "the arena's test set is hidden"
    admin.predict(api_name="/arena_give_back")
    assert listed(labeler) == everything

    # a round that fails in its process: no memory for even one pair
    for _ in range(3):
        admin.predict(api_name="/next_pair")
        admin.predict("", api_name="/vote_left")
    admin.predict(min_pairs=1, memory_budget_gib=1e-6, api_name="/start_round")
    for _ in range(240):
        progress = admin.predict(api_name="/round_status")[0]
        if progress.startswith("**failed**"):
            break
        time.sleep(0.5)
    assert "GiB are available for it" in progress, progress
    progress, _, _, table, _, _ = labeler.predict(api_name="/round_status")
    assert progress.startswith("**failed**") and "an admin can see why" in progress and "GiB" not in progress
    assert [row[-1] for row in table["data"]] == ["failed (an admin can see why)"]
    assert "GiB are available" in admin.predict(api_name="/round_status")[3]["data"][0][-1]


def test_failed_logins_slow_down_and_a_success_forgets_them(team_app):
    from access.throttle import FREE_FAILURES

    _, _, _, url = team_app
    right = {"username": LABELER[0], "password": LABELER[1]}
    for _ in range(FREE_FAILURES):
        assert httpx.post(f"{url}login", data=right | {"password": "not bob's password"}).status_code == 400
    refused = httpx.post(f"{url}login", data=right)  # even the right password waits now
    assert refused.status_code == 429 and "Too many failed logins from this address" in refused.json()["detail"]
    assert refused.headers["Retry-After"] == "1"
    time.sleep(1.1)
    assert httpx.post(f"{url}login", data=right).status_code == 200
    assert httpx.post(f"{url}login", data=right | {"password": "wrong"}).status_code == 400, "a fresh start"
    assert httpx.post(f"{url}login", data=right).status_code == 200


def test_an_admins_session_used_from_another_site_is_refused(team_app):
    admin, _, _, url = team_app
    body = {"data": ["A prompt another site slipped in."]}
    for origin in ("http://evil.example", "null"):
        refused = httpx.post(f"{url}gradio_api/call/add_prompt", json=body, cookies=admin.cookies,
                             headers={"Origin": origin})  # fmt: skip
        assert refused.status_code == 403 and "--allowed-origins" in refused.json()["detail"], origin
    listed = admin.predict(api_name="/stored_prompts")["choices"]
    assert body["data"][0] not in [c[0] if isinstance(c, (list, tuple)) else c for c in listed]


def test_uploads_are_capped(team_app):
    _, _, work, url = team_app
    labeler = gradio_client.Client(url, verbose=False, auth=LABELER)
    big = work / "big.txt"
    big.write_bytes(b"a prompt\n" * 250_000)  # 2.25 MB, over --max-upload-mb 1
    with big.open("rb") as f:
        refused = httpx.post(f"{url}gradio_api/upload", files={"files": f}, cookies=labeler.cookies)
    assert refused.status_code == 413, refused.text
    small = work / "small.txt"
    small.write_bytes(b"a prompt\n" * 1000)
    with small.open("rb") as f:
        assert httpx.post(f"{url}gradio_api/upload", files={"files": f}, cookies=labeler.cookies).status_code == 200
