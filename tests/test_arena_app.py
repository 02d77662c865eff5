"""The Arena tab through the launched app and gradio_client: blind battles, votes stored with the labeler, names
revealed after the vote, results that count the votes.

    python -m pytest tests/test_arena_app.py -q
"""

import re

import pytest

gradio_client = pytest.importorskip("gradio_client")

from helpers import PROMPT, fake_round, launch  # noqa: E402 (after the skip)

from storage import Store  # noqa: E402

pytestmark = pytest.mark.slow  # launches the app, a round's process or a benchmark

NAMES = ("base", "round_001")
REVEAL = re.compile(
    r"Saved battle #(\d+): you voted \*\*(A|B|a tie|both bad)\*\*\. A was \*\*(\w+)\*\*, B was \*\*(\w+)\*\*\."
)


def blind(*texts: str) -> bool:
    """No version name in what a labeler sees before voting (the completions are the tiny model's, so only the
    round's name, which no tokenizer spells by chance, is looked for in them)."""
    prompt, a, b, status = texts
    return all(name not in prompt + status for name in NAMES) and "round_001" not in a + b


def test_battles_are_blind_votes_carry_the_labeler_and_results_count_them(tiny_model_dir, tmp_path):
    with Store(tmp_path / "loop.duckdb") as store:  # a finished round to battle the base, before the app starts
        fake_round(store, tiny_model_dir, tmp_path / "round_001", init_lora_weights=False)
    for client, proc in launch(tiny_model_dir, tmp_path, args=("--backend", "eager")):
        client.predict(0.8, 0.95, 8, api_name="/apply_settings")  # battles sample with the Label tab's settings
        with pytest.raises(Exception, match="No battle on screen yet"):
            client.predict("round_001", "base", "tester", api_name="/arena_vote_a")
        with pytest.raises(Exception, match="Unknown version 'round_007'"):
            client.predict("round_007", "base", "tester", api_name="/arena_next")
        assert client.predict(api_name="/arena_latest") == ("round_001", "base")

        shown = client.predict("round_001", "base", "tester", api_name="/arena_next")
        assert shown[0].startswith(PROMPT) and blind(*shown), shown
        assert re.fullmatch(
            r"Battle #1 · \d more ready · which version is A and which is B is revealed after your vote", shown[3]
        )
        reveals = []
        for route in ("/arena_vote_a", "/arena_vote_b", "/arena_vote_tie", "/arena_vote_both_bad", "/arena_vote_a"):
            reveal, *shown = client.predict("round_001", "base", "tester", api_name=route)
            reveals.append(REVEAL.fullmatch(reveal).groups())
            assert shown[0].startswith(PROMPT) and blind(*shown), "the next battle is blind again"
        assert [int(r[0]) for r in reveals] == [1, 2, 3, 4, 5]
        assert all({left, right} == set(NAMES) for _, _, left, right in reveals)

        text, board, plot, win_plot, matrix = client.predict(api_name="/arena_results")
        assert "**5 voted battles.**" in text and "a tie or a *both bad* vote as half a win" in text
        assert "**round_001** vs base: not enough battles yet (5 of 10;" in text
        assert sorted(row[1] for row in board["data"]) == ["base", "round_001"]
        assert [row[4] for row in board["data"]] == [5, 5]
        assert {row[0] for row in matrix["data"]} == set(NAMES)
        checks = client.predict("round_001", "base", "tester", api_name="/arena_checks")
        assert checks.startswith("**What round_001 changed:** no diagnostics recorded for it"), checks
        assert checks.endswith("**Your labels** (tester): not enough votes yet (0 of 10 picks) to tell a position or "
                               "length bias.")  # fmt: skip

        # Which prompts battles are fought on: held out from labeling, at random or from a file.
        held = client.predict(3, api_name="/arena_hold_out")
        assert held.startswith("Held out 3 prompts with no label. **3 prompts held out**"), held
        with pytest.raises(Exception, match="have no label and trained no round; hold out at most"):
            client.predict(10_000, api_name="/arena_hold_out")
        assert client.predict(api_name="/arena_give_back").startswith("Gave 3 prompts back to labeling.")
        held_file = tmp_path / "held.txt"
        held_file.write_text("Held out one.\nHeld out two.\n")
        imported = client.predict(gradio_client.handle_file(str(held_file)), api_name="/arena_import_held_out")
        assert imported.startswith("Imported 2 new prompts from held.txt, held out. **2 prompts held out**")
        proc.kill()
        proc.wait()
    with Store(tmp_path / "loop.duckdb") as store:
        battles = store.battles.list()
        assert [b.labeler for b in battles] == ["tester"] * 6, "five voted, the sixth on screen"
        sides = {"A": "left", "B": "right", "a tie": "tie", "both bad": "both_bad"}
        for battle, (_, voted, left, right) in zip(battles, reveals, strict=False):
            assert (battle.left_version, battle.right_version) == (left, right)
            picked = {"left": left, "right": right}.get(sides[voted])
            expected = sides[voted] if picked is None else ("a" if picked == battle.version_a else "b")
            assert battle.winner == expected
        assert battles[-1].winner is None
        assert store.prompts.count_eval_only() == 2
        assert not {"Held out one.", "Held out two."} & {p.text for p in store.prompts.for_labeling(10_000)}
