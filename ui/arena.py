"""The Arena tab: blind battles between two versions, votes A / B / tie / both bad (keys 1–4), names revealed
after the vote, and the results: win rates with intervals, a Bradley–Terry leaderboard, plots of strength and of
the win rate against the base by version, and a matrix.

Built by `ui.build_demo`; every handler calls `services.arena`. Battles are sampled only once someone opens the
tab or asks for one. API names: /arena_next, /arena_vote_a, /arena_vote_b, /arena_vote_tie,
/arena_vote_both_bad, /arena_latest, /arena_results, /arena_checks (what the newer version changed, and the
viewer's own label biases) and /arena_candidate (the Train tab's "Compare in the Arena",
which only picks the versions) are a labeler's; /arena_hold_out, /arena_give_back and
/arena_import_held_out (which prompts are held out for battles) an admin's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from services import PromptFileError, Services, ShownBattle, StoreError
from ui import audit, guard, views
from ui.guard import bind

VOTE_BUTTONS = (  # (side as stored, API name suffix, label, key)
    ("left", "a", "👈 A is better", "1"),
    ("right", "b", "B is better 👉", "2"),
    ("tie", "tie", "🤝 Tie", "3"),
    ("both_bad", "both_bad", "👎 Both bad", "4"),
)


@dataclass(frozen=True)
class ArenaTab:
    battle: gr.State  # the ShownBattle on screen as a dict (no version names; None after a vote)
    first: gr.Dropdown  # the two versions that battle
    second: gr.Dropdown
    prompt: gr.HTML
    a_view: gr.HTML
    b_view: gr.HTML
    status: gr.Markdown
    reveal: gr.Markdown
    win_rates: gr.Markdown
    checks: gr.Markdown  # beside the win rates: how the newer version moved, and the viewer's own label biases
    leaderboard: gr.Dataframe
    plot: gr.LinePlot
    win_plot: gr.LinePlot  # each version's win rate against the base, over rounds
    matrix: gr.Dataframe
    admin_only: tuple[gr.components.Component, ...]  # hidden from labelers (the handlers refuse them anyway)

    def battle_outputs(self) -> list[gr.components.Component]:
        return [self.battle, self.prompt, self.a_view, self.b_view, self.status]

    def results_outputs(self) -> list[gr.components.Component]:
        return [self.win_rates, self.leaderboard, self.plot, self.win_plot, self.matrix]


# -- handlers --------------------------------------------------------------------------------------------------
def show_battle(services: Services, tab: ArenaTab, battle: ShownBattle, versions: tuple[str, str]) -> dict:
    return {
        tab.battle: dataclasses.asdict(battle),
        tab.prompt: views.prompt_html(battle.prompt),
        tab.a_view: views.completion_html(battle.left, battle.left_cut),
        tab.b_view: views.completion_html(battle.right, battle.right_cut),
        tab.status: views.battle_line(battle.id, services.arena.queued(versions)),
    }


def cleared(tab: ArenaTab, why: str) -> dict:
    return {tab.battle: None, tab.prompt: "", tab.a_view: "", tab.b_view: "", tab.status: why}


def next_battle(
    services: Services, tab: ArenaTab, first: str, second: str, typed: str, request: gr.Request
) -> Iterator[dict]:
    """A new battle between the picked versions for this labeler (the one on screen, if any, stays unvoted)."""
    name = guard.labeler(services, request, typed)
    versions = (first, second)
    try:
        services.arena.choose(versions)
        if services.arena.queued(versions) == 0:
            yield {tab.status: views.ARENA_WAITING}
        yield show_battle(services, tab, services.arena.next_battle(versions, name), versions)
    except (ValueError, RuntimeError, StoreError) as err:
        raise gr.Error(str(err)) from err


def next_battle_quietly(
    services: Services, tab: ArenaTab, first: str, second: str, typed: str, request: gr.Request
) -> Iterator[dict]:
    """`next_battle` for the versions just picked, with what is wrong (one version picked, only the base so far)
    in the status line rather than a popup."""
    try:
        yield from next_battle(services, tab, first, second, typed, request)
    except gr.Error as err:
        yield cleared(tab, str(err.message))


def open_battle(
    services: Services, tab: ArenaTab, shown: dict | None, first: str, second: str, typed: str, request: gr.Request
) -> Iterator[dict]:
    """The tab opened: a battle of the picked versions, unless one is on screen already. Opening the tab is
    what starts the arena's sampling."""
    if shown:
        yield {}
        return
    yield from next_battle_quietly(services, tab, first, second, typed, request)


def vote(
    services: Services,
    tab: ArenaTab,
    side: str,
    shown: dict | None,
    first: str,
    second: str,
    typed: str,
    request: gr.Request,
) -> Iterator[dict]:
    """Store the vote and reveal who was who at once, then show the next battle in the same request."""
    name = guard.labeler(services, request, typed)
    if not shown:
        raise gr.Error("No battle on screen yet: wait for it (or press 'Next battle'), then vote.")
    try:
        battle = services.arena.vote(shown["id"], side, name)
    except (ValueError, StoreError) as err:
        raise gr.Error(str(err)) from err
    done = {tab.reveal: views.reveal_line(battle.id, side, battle.left_version, battle.right_version)}
    pending = f'<div class="pending">{views.prompt_html(shown["prompt"])}</div>'
    yield done | {tab.battle: None, tab.prompt: pending, tab.status: views.ARENA_WAITING}
    versions = (first, second)
    try:
        yield done | show_battle(services, tab, services.arena.next_battle(versions, name), versions)
    except Exception as err:  # the vote is stored whatever happens to the next battle: say why there is none
        yield done | cleared(tab, f"No next battle: {err}")


def latest(services: Services, tab: ArenaTab) -> dict:
    """Pick the newest version and the one before it (the pickers' choices refresh on their own timer)."""
    try:
        newest, previous = services.arena.latest_pair()
    except ValueError as err:
        raise gr.Error(str(err)) from err
    return {tab.first: newest, tab.second: previous}


def candidate_pair(services: Services, tab: ArenaTab) -> dict:
    """Pick the round awaiting review and the serving version (the Train tab's review button), for a blind
    comparison before serving it."""
    candidate = services.versions.candidate()
    if candidate is None:
        raise gr.Error("No round is awaiting review: turn on 'Review each round before serving' and train one.")
    return {tab.first: candidate, tab.second: services.status().serving}


def results(services: Services, tab: ArenaTab) -> dict:
    """Win rates in words, the leaderboard, strength by version and the win-fraction matrix."""
    found = services.arena.results()
    lines = [
        views.win_rate_line(p.version, p.opponent, p.wins, p.losses, p.ties, p.rate, services.arena.min_battles)
        for p in found.pairs
    ]
    if found.note:
        lines.append(found.note)
    text = "\n\n".join([f"**{found.battles} voted battles.** {views.TIES_AS_HALF}", *lines])
    board = pd.DataFrame(views.leaderboard_rows(found.strengths), columns=list(views.LEADERBOARD_COLUMNS))
    plot_rows = views.strength_rows(found.strengths, services.arena.versions())
    win_rows = views.win_rate_rows(found.pairs, services.arena.versions())
    matrix = views.matrix_rows(found.matrix) if found.matrix is not None else []
    return {
        tab.win_rates: text,
        tab.leaderboard: board,
        tab.plot: gr.update(
            value=pd.DataFrame(plot_rows, columns=["version", "strength", "line"]), visible=bool(plot_rows)
        ),
        tab.win_plot: gr.update(
            value=pd.DataFrame(win_rows, columns=["version", "win rate", "line"]), visible=bool(win_rows)
        ),
        tab.matrix: pd.DataFrame(matrix),
    }


def held_out_line(services: Services) -> str:
    n = services.arena.count_held_out()
    if n == 0:
        return (
            "No prompts are held out: battles use prompts no round trained on. Hold some out so that they are "
            "never labeled or trained on, and every round is judged on the same ones."
        )
    return f"**{n} prompts held out** for battles: never sampled for labeling, never trained on or exported."


def hold_out(services: Services, how_many: float | None, request: gr.Request) -> str:
    guard.require(services, request, "hold out prompts")
    if how_many is None or float(how_many) != int(how_many):
        raise gr.Error("Say how many prompts to hold out: a whole number, e.g. 24.")
    try:
        ids = services.arena.hold_out(int(how_many))
    except StoreError as err:
        raise gr.Error(str(err)) from err
    return f"Held out {len(ids)} prompts with no label. " + held_out_line(services)


def give_back(services: Services, request: gr.Request) -> str:
    guard.require(services, request, "give held-out prompts back")
    n = services.arena.give_back()
    return f"Gave {n} prompts back to labeling. " + held_out_line(services)


def import_held_out(services: Services, file: str | None, request: gr.Request) -> str:
    guard.require(services, request, "import prompts")
    if file is None:
        raise gr.Error("Choose a JSONL, CSV, TXT or parquet file first.")
    try:
        added = services.arena.import_held_out(file)
    except (PromptFileError, ValueError, StoreError) as err:
        raise gr.Error(str(err)) from err
    return f"Imported {added} new prompts from {Path(file).name}, held out. " + held_out_line(services)


def checks(services: Services, first: str, second: str, typed: str, request: gr.Request) -> str:
    """Beside the win rates, on the same screen: what the newer picked version changed (length, diversity, KL,
    with warnings) and whether the viewer's own labels lean to a side or to length."""
    name = guard.labeler(services, request, typed)
    changed = views.version_change_markdown(first, second, services.rounds.list())
    own = audit.own_labels_markdown(name, audit.counted_votes(services))
    return "\n\n".join(part for part in (changed, own) if part)


# -- layout and wiring -------------------------------------------------------------------------------------
def default_pair(services: Services) -> tuple[str, str | None]:
    """The newest version and the one before it; with only the base, the base and nothing."""
    try:
        return services.arena.latest_pair()
    except ValueError:
        return services.arena.versions()[0], None


def build(services: Services, tab_block: gr.Tab, typed_name: gr.Textbox) -> ArenaTab:
    """The tab's widgets and events, inside `tab_block`; `typed_name` is the Label tab's name box (votes carry
    the login instead when logins are on)."""
    versions, (newest, previous) = services.arena.versions(), default_pair(services)
    gr.Markdown(views.ARENA_HELP)
    with gr.Row():
        first = gr.Dropdown(versions, value=newest, label="One version", allow_custom_value=True, scale=2)
        second = gr.Dropdown(versions, value=previous, label="The other version", allow_custom_value=True, scale=2)
        latest_button = gr.Button("Latest vs previous", scale=1)
    prompt = gr.HTML(elem_id="arena-prompt")
    with gr.Row(elem_id="arena-row"):
        with gr.Column(min_width=280):
            gr.Markdown("**A** `1`")
            a_view = gr.HTML(elem_id="arena-a-view")
        with gr.Column(min_width=280):
            gr.Markdown("**B** `2`")
            b_view = gr.HTML(elem_id="arena-b-view")
    with gr.Row(elem_id="arena-vote-bar"):
        buttons = {
            side: gr.Button(f"{text} [{key}]", elem_id=f"arena-vote-{suffix}", min_width=90)
            for side, suffix, text, key in VOTE_BUTTONS
        }
    next_button = gr.Button("Next battle", size="sm")
    status, reveal = gr.Markdown(elem_id="arena-status"), gr.Markdown(elem_id="arena-reveal")
    with gr.Accordion("Results", open=True):
        refresh = gr.Button("Refresh results", size="sm")
        win_rates = gr.Markdown()
        checks_view = gr.Markdown()
        leaderboard = gr.Dataframe(label="Leaderboard (Bradley–Terry)", interactive=False)
        plot = gr.LinePlot(x="version", y="strength", color="line", title="Strength by version", visible=False)
        win_plot = gr.LinePlot(
            x="version", y="win rate", color="line", title="Win rate against the base (%), by version", visible=False
        )
        matrix = gr.Dataframe(label="How often the row's version beat the column's (ties half)", interactive=False)
    held_out = _held_out_panel(services)
    tab = ArenaTab(
        battle=gr.State(None),
        first=first,
        second=second,
        prompt=prompt,
        a_view=a_view,
        b_view=b_view,
        status=status,
        reveal=reveal,
        win_rates=win_rates,
        checks=checks_view,
        leaderboard=leaderboard,
        plot=plot,
        win_plot=win_plot,
        matrix=matrix,
        admin_only=(held_out,),
    )

    _wire(services, tab, tab_block, typed_name, _Controls(buttons, next_button, refresh, latest_button))
    return tab


def _held_out_panel(services: Services) -> gr.Accordion:
    """The admin's held-out prompts: hold out unlabeled ones, give them back, or import a file of them."""
    with gr.Accordion("Held-out prompts (admin)", open=False) as held_out:
        held_status = gr.Markdown(held_out_line(services))
        with gr.Row():
            how_many = gr.Number(24, precision=0, minimum=1, label="How many", scale=1)
            hold_button = gr.Button("Hold out prompts with no label", scale=2)
            give_back_button = gr.Button("Give them all back to labeling", scale=2)
        upload = gr.File(label="Import JSONL / CSV / TXT / parquet as held-out prompts", type="filepath")
        import_button = gr.Button("Import file, held out")
    hold_button.click(bind(hold_out, services), how_many, held_status, api_name="arena_hold_out")
    give_back_button.click(bind(give_back, services), None, held_status, api_name="arena_give_back")
    import_button.click(bind(import_held_out, services), upload, held_status, api_name="arena_import_held_out")
    return held_out


@dataclass(frozen=True)
class _Controls:
    """The tab's buttons, which only its own events use."""

    votes: dict[str, gr.Button]
    next_battle: gr.Button
    refresh: gr.Button
    latest: gr.Button


def _wire(services: Services, tab: ArenaTab, tab_block: gr.Tab, typed_name: gr.Textbox, controls: _Controls) -> None:
    hidden = {"show_progress": "hidden", "trigger_mode": "multiple"}
    picked = [tab.first, tab.second, typed_name]
    outputs = tab.battle_outputs()
    controls.next_battle.click(bind(next_battle, services, tab), picked, outputs, api_name="arena_next", **hidden)
    # Results after each vote, one computation at a time (a bootstrap takes ~0.5 s; cached until the next vote).
    show_results = bind(results, services, tab)
    one_at_a_time = {"concurrency_limit": 1, "concurrency_id": "arena_results", "show_progress": "hidden"}
    for side, suffix, _, _ in VOTE_BUTTONS:
        controls.votes[side].click(
            bind(vote, services, tab, side),
            [tab.battle, *picked],
            [tab.reveal, *outputs],
            api_name=f"arena_vote_{suffix}",
            **hidden,
        ).success(show_results, None, tab.results_outputs(), api_name=False, **one_at_a_time)
    controls.refresh.click(show_results, None, tab.results_outputs(), api_name="arena_results", **one_at_a_time)
    quietly = bind(next_battle_quietly, services, tab)
    latest_versions = bind(latest, services, tab)
    controls.latest.click(latest_versions, None, [tab.first, tab.second], api_name="arena_latest").success(
        quietly, picked, outputs, api_name=False, show_progress="hidden"
    )
    gr.on([tab.first.input, tab.second.input], quietly, picked, outputs, api_name=False, show_progress="hidden")
    opened = bind(open_battle, services, tab)
    tab_block.select(opened, [tab.battle, *picked], outputs, api_name=False, show_progress="hidden")
    tab_block.select(show_results, None, tab.results_outputs(), api_name=False, **one_at_a_time)
    show_checks = bind(checks, services)
    controls.refresh.click(show_checks, picked, tab.checks, api_name="arena_checks", show_progress="hidden")
    gr.on(
        [tab_block.select, tab.first.change, tab.second.change, *(b.click for b in controls.votes.values())],
        show_checks,
        picked,
        tab.checks,
        api_name=False,
        show_progress="hidden",
    )
