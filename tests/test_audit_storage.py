"""Label audits and second looks on a real DuckDB store: votes with known biases come back as the audits need
them (undone votes and edits left out), second votes never train, and agreement is computed from them; then
second looks served through the labeling loop on the tiny model.

    python -m pytest tests/test_audit_storage.py -q
"""

import itertools
import random
from dataclasses import asdict

import pytest
from helpers import SETTINGS
from scipy.stats import binomtest

from evaluation.audit import Vote, agreement, length_bias, position_bias, rates
from storage import Store, StoreError

SHORT, LONG = "Short.", "A much longer answer, with more words in it."
_prompts = itertools.count()


def judge(store, labeler: str, choice: str, left: str = SHORT, right: str = LONG, version: str = "base") -> int:
    """A new prompt whose completions `left` / `right` are shown in that order, and `labeler`'s `choice`."""
    prompt_id = store.prompts.add(f"prompt {next(_prompts)}")
    left_id = store.generations.add(prompt_id, version, left, SETTINGS)
    right_id = store.generations.add(prompt_id, version, right, SETTINGS)
    return store.judgements.add(prompt_id, left_id, right_id, choice, labeler, version)


def biased_store(store) -> None:
    """lefty always picks left (12 under base, 8 under round_001), longy always picks the longer answer (20, the
    longer on the left every other time), tess mostly ties (6 ties, 2 both bad, 2 skips of 10)."""
    for i in range(20):
        sides = (SHORT, LONG) if i % 2 else (LONG, SHORT)
        judge(store, "lefty", "left", *sides, version="base" if i < 12 else "round_001")
        judge(store, "longy", "right" if i % 2 else "left", *sides)
    for choice in ["tie"] * 6 + ["both_bad"] * 2 + ["skip"] * 2:
        judge(store, "tess", choice)


def test_votes_with_known_biases_give_the_expected_audit(store):
    biased_store(store)
    undone = judge(store, "lefty", "right")  # undone: never audited
    store.judgements.withdraw(undone, "lefty")
    edited = store.generations.get(store.judgements.list()[0].right_generation_id)
    # an edit: left out
    store.judgements.add_edited_pair(edited.prompt_id, edited.id, "A better answer.", "longy", "base")
    votes = [Vote(**asdict(v)) for v in store.audit.votes()]  # the store's records, as the audits take them
    assert len(votes) == 50 and undone not in {v.pair_id for v in votes}
    assert {v.batch for v in votes if v.labeler == "lefty"} == {"base", "round_001"}
    first = votes[0]
    assert (first.labeler, first.choice, first.left_len, first.right_len) == ("lefty", "left", len(LONG), len(SHORT))

    lefty, longy, tess = position_bias(votes)
    assert (lefty.who, lefty.n, lefty.rate) == ("lefty", 20, 1.0)
    assert lefty.p_value == pytest.approx(binomtest(20, 20).pvalue) and "toward the left" in lefty.plain
    assert (longy.rate, tess.n) == (0.5, 0)
    assert length_bias([v for v in votes if v.labeler == "longy"]).rate == 1.0
    assert length_bias([v for v in votes if v.labeler == "lefty"]).rate == 0.5
    tess_rates = [r for r in rates(votes) if r.labeler == "tess"][0]
    assert (tess_rates.tie, tess_rates.both_bad, tess_rates.skip) == (0.6, 0.2, 0.2)


def test_the_second_look_share_is_a_setting_kept_in_the_file(tmp_path):
    with Store(tmp_path / "loop.duckdb") as store:
        assert store.settings.second_look_share() == 0.0, "off by default"
        store.settings.set_second_look_share(0.25)
        with pytest.raises(ValueError, match="between 0 and 1, got 1.5; 0 turns them off"):
            store.settings.set_second_look_share(1.5)
    with Store(tmp_path / "loop.duckdb") as store:
        assert store.settings.second_look_share() == 0.25
        assert "007_second_votes" in store.applied_migrations()


def test_a_second_look_is_someone_elses_judged_pair_and_its_vote_never_trains(store, tmp_path):
    picked = judge(store, "ana", "left")
    judge(store, "ana", "skip")  # a skip says nothing to agree with
    bobs = judge(store, "bob", "right")  # bob's own
    judge(store, "ana", "tie")  # on a prompt then held out for the arena
    store.prompts.set_eval_only([store.judgements.list()[-1].prompt_id])
    pairs, count = store.training_data.preference_pairs(), store.judgements.count()

    look = store.audit.second_look("bob")
    assert look.judgement_id == picked and (look.left, look.right) == (SHORT, LONG) and look.version == "base"
    with pytest.raises(StoreError, match="is your own; a second look needs another labeler"):
        store.audit.add_second_vote(picked, look.left_id, look.right_id, "left", "ana")
    with pytest.raises(StoreError, match="not the pair of vote"):
        store.audit.add_second_vote(picked, look.left_id, look.left_id + 2, "left", "bob")
    # bob sees the sides swapped, and picks the same completion ana did (the short one, now on the right)
    second = store.audit.add_second_vote(picked, look.right_id, look.left_id, "right", "bob")
    assert store.audit.add_second_vote(picked, look.right_id, look.left_id, "right", "bob") == second
    with pytest.raises(StoreError, match="already gave this pair a second look"):
        store.audit.add_second_vote(picked, look.right_id, look.left_id, "left", "bob")

    assert store.training_data.preference_pairs() == pairs, "a second vote never trains"
    assert store.judgements.count() == count, "a second vote never trains"
    assert store.training_data.export_pairs(tmp_path / "pairs.jsonl") == len(pairs)
    assert store.audit.second_look("bob") is None, "nothing else of someone else's to look at"
    assert store.audit.second_look("cy").judgement_id == bobs, "the pairs with the fewest second looks first"
    labels, completions = store.audit.agreement_labels()
    item = f"{min(look.left_id, look.right_id)}-{max(look.left_id, look.right_id)}"
    assert labels == {item: {"ana": f"gen_{look.left_id}", "bob": f"gen_{look.left_id}"}}
    assert completions[item] == (f"gen_{look.left_id}", f"gen_{look.right_id}")
    bob = [v for v in store.audit.votes() if v.labeler == "bob"]
    # his own judgement, then his second vote, with its sides as he saw them
    assert [(v.choice, v.left_len, v.right_len) for v in bob] == [("right", 6, 44), ("right", 44, 6)]

    with pytest.raises(StoreError, match="is bob's; you can undo only your own"):
        store.audit.withdraw_second_vote(second, "cy")
    store.audit.withdraw_second_vote(second, "bob")
    with pytest.raises(StoreError, match="already undone"):
        store.audit.withdraw_second_vote(second, "bob")
    assert store.audit.count_second_votes() == 0 and store.audit.agreement_labels() == ({}, {})
    assert store.audit.second_look("bob").judgement_id == picked, "undone: it may be shown again"
    store.judgements.withdraw(picked, "ana")
    with pytest.raises(StoreError, match="was undone or never existed"):
        store.audit.add_second_vote(picked, look.left_id, look.right_id, "left", "bob")


def test_kappa_comes_from_second_votes_mapped_back_to_the_chosen_completion(store):
    # ana and bob on 12 pairs: bob sees each with the sides swapped and agrees on 9 chosen completions
    ana_choices = ["left", "right", "tie", "left"] * 3
    for i, choice in enumerate(ana_choices):
        judgement_id = judge(store, "ana", choice)
        look = store.audit.second_look("bob")
        assert look.judgement_id == judgement_id
        same = {"left": "right", "right": "left"}.get(choice, choice)  # swapped sides: the same completion
        differ = {"left": "left", "right": "right", "tie": "left"}[choice]
        store.audit.add_second_vote(judgement_id, look.right_id, look.left_id, same if i % 4 else differ, "bob")
    result = agreement(*store.audit.agreement_labels())
    assert result.shared[("ana", "bob")] == 12
    # by hand, in first/second terms: ana first,second,tie,first ×3; bob second,second,tie,first ×3
    # -> 9 of 12 agree; p_o = 0.75, p_e = (6*3 + 3*6 + 3*3) / 144 = 45/144, kappa = (0.75 - 0.3125) / 0.6875
    assert result.kappa[("ana", "bob")] == pytest.approx((0.75 - 45 / 144) / (1 - 45 / 144))


def test_the_loop_serves_second_looks_with_sides_rerandomized_and_stores_them_apart(loop):
    for i in range(6):
        pair = loop.next_pair(labeler="ana")
        assert pair.second_look_of is None, "off by default"
        loop.vote(pair, "left" if i % 2 else "right", labeler="ana")
    pairs, judgements = loop.store.training_data.preference_pairs(), loop.store.judgements.list()
    first_shown = {j.id: (j.left_generation_id, j.right_generation_id) for j in judgements}
    ana_chose = {j.id: j.left_generation_id if j.choice == "left" else j.right_generation_id for j in judgements}
    loop.store.settings.set_second_look_share(1.0)
    loop.rng = random.Random(3)
    assert loop.next_pair(labeler="ana").second_look_of is None, "nobody else's pairs to look at"

    swapped = []
    for _ in range(6):  # bob picks the completion ana chose, wherever it is shown
        pair = loop.next_pair(labeler="bob")
        assert pair.second_look_of in first_shown
        swapped.append((pair.left_id, pair.right_id) != first_shown[pair.second_look_of])
        same = "left" if pair.left_id == ana_chose[pair.second_look_of] else "right"
        vote_id = loop.vote(pair, same, labeler="bob")
    assert any(swapped) and not all(swapped), "sides are re-randomized"
    assert loop.next_pair(labeler="bob").second_look_of is None, "all seen: a new pair"
    assert loop.store.training_data.preference_pairs() == pairs and loop.store.judgements.count() == 6
    assert loop.store.audit.count_second_votes() == 6

    labels, completions = loop.store.audit.agreement_labels()
    assert all(by["ana"] == by["bob"] for by in labels.values()) and len(labels) == 6
    result = agreement(labels, completions)
    assert result.shared[("ana", "bob")] == 6 and result.kappa[("ana", "bob")] == 1.0 and result.alpha == 1.0
    loop.undo([vote_id], "bob", second_look=True)
    assert loop.store.audit.count_second_votes() == 5 and loop.store.judgements.count() == 6
