"""The Audit tab through the launched app and gradio_client, with logins: an admin sees a labeler's position bias,
turns second looks on, a second labeler is served the first one's pairs and votes on them, and the tab shows
their agreement; labelers are refused the tab's routes, and second votes never become training pairs.

    python -m pytest tests/test_audit_app.py -q
"""

import pytest

gradio_client = pytest.importorskip("gradio_client")

from argon2 import PasswordHasher  # noqa: E402 (after the skip)
from helpers import SETTINGS, launch  # noqa: E402

from access import UsersFile  # noqa: E402
from storage import Store  # noqa: E402

pytestmark = pytest.mark.slow  # launches the app, a round's process or a benchmark

ADMIN, LABELER = ("ada", "admin passphrase"), ("bob", "labeler passphrase")


def ada_votes(store: Store, n: int = 12) -> None:
    """`n` pairs ada judged, always picking the left one ("Pick me …"); every other pair was stored other side
    first, so her chosen completion is the first of the pair half the time and the second otherwise."""
    for i in range(n):
        prompt_id = store.prompts.add(f"Audit prompt {i}.")
        texts = [f"Pick me {i}.", f"Not me {i}, a longer answer."]
        ids = [store.generations.add(prompt_id, "base", t, SETTINGS) for t in (texts if i % 2 else texts[::-1])]
        chosen, other = ids if i % 2 else ids[::-1]
        store.judgements.add(prompt_id, chosen, other, "left", "ada", "base")


def test_the_audit_tab_shows_bias_and_agreement_from_second_looks(tiny_model_dir, tmp_path):
    users = UsersFile(tmp_path / "users.json", hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users.add(*ADMIN, role="admin")
    users.add(*LABELER, role="labeler")
    with Store(tmp_path / "loop.duckdb") as store:
        ada_votes(store)
        pairs = store.training_data.preference_pairs()
    args = ("--users", str(users.path), "--backend", "eager")
    for admin, proc in launch(tiny_model_dir, tmp_path, args=args, auth=ADMIN):
        admin.predict(0.8, 0.95, 8, api_name="/apply_settings")
        bob = gradio_client.Client(admin.src, verbose=False, auth=LABELER)
        for route, arguments in (("/audit", ()), ("/set_second_look_share", (1.0,))):
            with pytest.raises(Exception, match=r"Only an admin can .*'bob' is a labeler"):
                bob.predict(*arguments, api_name=route)

        summary, table, share, agreement, kappas = admin.predict(api_name="/audit")
        assert summary.startswith("**12 votes** by 1 labeler.") and share == 0
        assert "**ada** (base) picks the left completion 100% of the time (n=12, p = 0.00049)" in summary
        assert table["data"][0][:5] == ["ada", "base", 12, "100%", "0.00049"]
        assert agreement.startswith("**0 second looks.** Krippendorff's α: not enough doubly-labeled pairs yet")

        assert "About 100% of the pairs served" in admin.predict(1.0, api_name="/set_second_look_share")
        shown = bob.predict(api_name="/next_pair")
        for _ in range(10):  # bob picks the completion ada picked, on whichever side it is shown
            side = "left" if shown[3].startswith("Pick me") else "right"
            message, *shown = bob.predict("", api_name=f"/vote_{side}")
            assert message.startswith("Saved second look #") and "does not train" in message

        summary, table, share, agreement, kappas = admin.predict(api_name="/audit")
        assert share == 1.0 and summary.startswith("**22 votes** by 2 labelers.")
        assert [row[:3] for row in table["data"]] == [["ada", "base", 12], ["bob", "base", 10]]
        assert agreement.startswith("**10 second looks.** Krippendorff's α = **1.00** over 10 doubly-labeled pairs.")
        assert "- bob agrees with the others' majority on 100% of 10 pairs" in agreement
        assert kappas["data"] == [["ada & bob", "1.00", 10]]
        proc.kill()
        proc.wait()
    with Store(tmp_path / "loop.duckdb") as store:
        assert store.training_data.preference_pairs() == pairs, "second looks never train"
        assert store.audit.count_second_votes() == 10 and store.settings.second_look_share() == 1.0
