"""prefloop's web UI: `build_demo(services)` lays out the Label, Train, Compare, Arena and Audit tabs, one module
each.

    demo = build_demo(open_services(ServiceConfig()))
    demo.queue(default_concurrency_limit=8).launch(head=KEYS_JS)

This package is the only one that imports gradio. Handlers are module-level functions bound to `services`
(and to their tab's widgets, to key their returns by component) with functools.partial; what they show is
formatted by the pure functions in ui/views.py.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import gradio as gr

from services import BASE_VERSION, Services
from ui import arena, audit, compare, guard, label, team, train
from ui.arena import ArenaTab
from ui.compare import CompareTab
from ui.train import TrainTab

HERE = Path(__file__).parent
# The page loads images and media only from the app itself: a prompt or completion that slips an image
# past the renderer still cannot make a labeler's browser call out (tracking pixels).
# Keys (unless typing in a box): 1–5 / s vote (or, in 'Rate one' mode, rate), u undo, e edit, ? the keys;
# in the edit box Ctrl+Enter saves and Esc cancels. In the Arena tab 1 A, 2 B, 3 tie, 4 both bad. A key pressed
# with no pair (or battle) on screen says so.
# The two completions scroll together.
KEYS_JS = (
    "<meta http-equiv=\"Content-Security-Policy\" content=\"img-src 'self' data: blob:; media-src 'self' data: blob:\">"
    f"\n<script>\n{(HERE / 'keys.js').read_text()}</script>\n"
)
# The pair side by side on a wide screen, stacked on a phone, where the vote buttons stay at the bottom within
# reach of the thumb; long completions scroll inside their boxes (together).
CSS = (HERE / "style.css").read_text()
VERSIONS_REFRESH_S = 5.0


def refresh_versions(services: Services, pickers: list[gr.Dropdown]) -> dict:
    """Every version picker offers the base and the finished rounds (a round may have finished meanwhile)."""
    choices = services.versions.list()
    return {picker: gr.update(choices=choices) for picker in pickers}


def versions_on_load(services: Services, train_tab: TrainTab, compare_tab: CompareTab, arena_tab: ArenaTab) -> dict:
    """A new page: the serve picker at the round awaiting review, else the serving version; Compare's B at the
    serving version, A at the base; the arena's latest vs previous."""
    choices, serving = services.versions.list(), services.status().serving
    newest, previous = arena.default_pair(services)
    return {
        train_tab.serve_choice: gr.update(choices=choices, value=services.versions.candidate() or serving),
        compare_tab.version_a: gr.update(choices=choices, value=BASE_VERSION),
        compare_tab.version_b: gr.update(choices=choices, value=serving),
        arena_tab.first: gr.update(choices=choices, value=newest),
        arena_tab.second: gr.update(choices=choices, value=previous),
    }


def who_is_here(
    services: Services,
    admin_blocks: list[gr.components.Component],
    admin_tabs: list[gr.Tab],
    user_line: gr.Markdown,
    request: gr.Request,
) -> dict:
    """A new page: the login and role on top; admin-only tabs and buttons shown to admins only (a labeler who
    calls their routes anyway is refused by the handlers)."""
    user = guard.user_of(request)
    role = services.team.role(user)
    admin = role == "admin"
    shown = {block: gr.update(visible=admin) for block in [*admin_tabs, *admin_blocks]}
    line = f"Logged in as **{user}** ({role}) · [Log out](/logout)" if services.team.logins else ""
    return shown | {user_line: line}


def build_demo(services: Services) -> gr.Blocks:
    # Uploads and files handed out go to gradio's cache: each hour, those older than a day are deleted.
    with gr.Blocks(title="prefloop", delete_cache=(3600, 86400)) as demo:
        mode = services.rounds.training_mode()
        gr.Markdown(f"# prefloop\nModel `{services.model}` on **{services.device}** · training: **{mode}**")
        serving = gr.Markdown(f"Serving **{services.status().serving}**")
        user_line = gr.Markdown()
        with gr.Tab("Label"):
            label_tab = label.build(services, demo)
        with gr.Tab("Train") as train_block:
            train_tab = train.build(services, demo, serving)
        with gr.Tab("Compare") as compare_block:
            compare_tab = compare.build(services, compare_block, label_tab.sampling)
        with gr.Tab("Arena") as arena_block:
            arena_tab = arena.build(services, arena_block, label_tab.labeler)
        with gr.Tab("Audit") as audit_block:
            audit.build(services, audit_block)
        admin_tabs = [train_block, audit_block]
        if services.team.logins:
            with gr.Tab("Team") as team_block:
                team.build(services, team_block)
            admin_tabs.append(team_block)
        admin_blocks = [*label_tab.admin_only, *arena_tab.admin_only]
        demo.load(
            guard.bind(who_is_here, services, admin_blocks, admin_tabs, user_line),
            None,
            [*admin_tabs, *admin_blocks, user_line],
            api_name=False,
        )

        pickers = [
            train_tab.serve_choice,
            compare_tab.version_a,
            compare_tab.version_b,
            arena_tab.first,
            arena_tab.second,
        ]
        gr.on(
            [train_tab.serve_button.click, train_tab.start_button.click, gr.Timer(VERSIONS_REFRESH_S).tick],
            partial(refresh_versions, services, pickers),
            None,
            pickers,
            api_name=False,
            show_progress="hidden",
        )
        # The Train tab's review button: candidate vs serving in the Arena tab, a battle of them ready there.
        pick = [arena_tab.first, arena_tab.second]
        train_tab.arena_button.click(
            guard.bind(arena.candidate_pair, services, arena_tab), None, pick, api_name="arena_candidate"
        ).success(
            guard.bind(arena.next_battle_quietly, services, arena_tab),
            [*pick, label_tab.labeler],
            arena_tab.battle_outputs(),
            api_name=False,
            show_progress="hidden",
        )
        load_versions = partial(versions_on_load, services, train_tab, compare_tab, arena_tab)
        demo.load(load_versions, None, pickers, api_name=False)
    return demo


__all__ = ["CSS", "KEYS_JS", "build_demo"]
