"""Preferences › Label: compare responses blind, vote, reveal; prompt sets to draw from."""

from __future__ import annotations

import html
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from pipelines.engine import adapters, models
from pipelines.engine.sampling import SamplingParams
from pipelines.labels import comparisons, drives, preference_data, preferences
from pipelines.store.files import copy_upload
from pipelines.train import reward, sft_data

from .controls import ASSETS, MODEL_EVENTS, Throttle, cleared_first
from .errors import UserError
from .guard import signed_in
from .pickers import LiveDropdown
from .sidebar import Shared, adapter_choices, client_key, known_labeller, labeller, selected_adapter, session_key
from .spec_controls import build_spec, control

MODES = (
    "Type a prompt",
    "From a prompt set",
    "Queue: items you have not voted on yet",
    "Label drive: the next item assigned to you",
)
NO_REWARD_MODEL = "(none)"
UI_UPDATE_SECONDS = 0.1
PROMPT_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".tsv")
# what showing an item sets: its id, its prompt, each response box, the 7 voting controls, the note, the progress
ITEM_OUTPUTS = 2 + preferences.MAX_RESPONSES + 7 + 2


def _response_updates(texts: list[str], n: int) -> list[Any]:
    return [
        gr.update(value=texts[i] if i < len(texts) else "", visible=i < n) for i in range(preferences.MAX_RESPONSES)
    ]


def _vote_controls(n: int, enabled: bool) -> list[Any]:
    """Updates for the voting controls: A/B buttons for two responses, a ranking for more."""
    two = n == 2
    return [
        gr.update(visible=two),  # the row holding the four buttons
        *[gr.update(interactive=enabled) for _ in range(4)],  # A better, B better, tie, both bad
        gr.update(visible=not two and n > 0, interactive=enabled),  # ranking box
        gr.update(visible=not two and n > 0, interactive=enabled),  # ranking submit
    ]


def _prompt_md(item_prompt: list[Any]) -> str:
    lines = []
    for message in item_prompt:
        role = message.role if hasattr(message, "role") else message["role"]
        content = message.content if hasattr(message, "content") else message["content"]
        lines.append(f"**{role}:** {html.escape(content)}")
    return "  \n".join(lines)


LETTERS = "abcd"


@dataclass(frozen=True)
class ItemSources:
    """What generates a new comparison item: up to four sources (adapter, temperature, seed) and the
    response budget. The form and the /new_item API name them `adapter_a`, `temperature_a`,
    `seed_a`, ... `max_new_tokens` (one definition: this class)."""

    adapters: tuple[str | None, ...] = (None, None, None, None)
    temperatures: tuple[float, ...] = (0.7, 1.0, 0.7, 1.0)
    seeds: tuple[float, ...] = (-1, -1, -1, -1)
    max_new_tokens: float = 128

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> ItemSources:
        names = {f"{kind}_{letter}" for kind in ("adapter", "temperature", "seed") for letter in LETTERS}
        unknown = sorted(set(values) - names - {"max_new_tokens"})
        if unknown:
            raise UserError(f"Unknown setting(s) for a new item: {', '.join(unknown)}.")
        default = cls()

        def per_source(kind: str, defaults: tuple) -> tuple:
            return tuple(values.get(f"{kind}_{letter}", d) for letter, d in zip(LETTERS, defaults, strict=True))

        return cls(
            adapters=per_source("adapter", default.adapters),
            temperatures=per_source("temperature", default.temperatures),
            seeds=per_source("seed", default.seeds),
            max_new_tokens=values.get("max_new_tokens", default.max_new_tokens),
        )

    def sources(self, n: int) -> list[comparisons.Source]:
        """The first `n` sources, their settings checked like any request."""
        return [
            comparisons.Source(
                adapter=selected_adapter(adapter),
                params=build_spec(
                    SamplingParams, {"temperature": temperature, "max_new_tokens": self.max_new_tokens, "seed": seed}
                ),
            )
            for adapter, temperature, seed in list(zip(self.adapters, self.temperatures, self.seeds, strict=True))[:n]
        ]


def new_item(
    mode: str,
    prompt: str,
    prompt_set: str | None,
    n_responses: float,
    annotator: str,
    drive: str | None = None,
    request: gr.Request | None = None,
    **settings: Any,
):
    """Load or generate the next item. Outputs: item id, prompt, 4 responses, vote controls, reveal,
    drive progress. `settings` are `ItemSources`' fields as the form names them."""
    chosen = ItemSources.from_values(settings)
    if mode == MODES[3]:
        who = labeller(annotator, request, drive_item=True)
        if not drive:
            raise UserError("Choose a label drive (an admin creates them under Dataset › Label drives).")
        item_id = drives.take(drive, who, client=client_key(request))
        progress = drives.describe(drives.progress(drive, who))
        if item_id is None:
            yield _done(drive, progress)
            return
        yield _show(preferences.get_item(item_id), "Which response do you prefer?", progress)
        return
    if mode == MODES[2]:
        who = labeller(annotator, request, "label items outside a label drive", drive_item=False)
        item = preferences.next_unlabelled(who)
        if item is None:
            raise UserError(
                "The queue is empty: you have voted on every stored item (import some, or send them from Chat)."
            )
        yield _show(item, f"Item from the queue ({html.escape(item.origin)}).", "")
        return
    who = labeller(annotator, request, "create items to label", drive_item=False)
    if mode == MODES[1]:
        if not prompt_set:
            raise UserError("Upload or choose a prompt set first.")
        messages = preferences.draw_prompt(prompt_set)
        origin = f"promptset:{prompt_set}"
    else:
        if not prompt or not prompt.strip():
            raise UserError("Type a prompt to compare responses on.")
        messages = [preferences.Message("user", prompt.strip())]
        origin = "typed"
    n = int(n_responses)
    sources = chosen.sources(n)
    prompt_md = _prompt_md(messages)
    throttle = Throttle(UI_UPDATE_SECONDS)
    for texts, item in comparisons.stream_item(models.get_handle(), messages, sources, origin=origin, created_by=who):
        if item is not None:
            yield (
                item.id,
                prompt_md,
                *_response_updates(texts, n),
                *_vote_controls(n, True),
                "Which response do you prefer? Sources are hidden until you vote.",
                "",
            )
        elif throttle.due():
            yield (
                None,
                prompt_md,
                *_response_updates(texts, n),
                *_vote_controls(n, False),
                "Generating all responses in one batch…",
                "",
            )


def resume_held(mode: str, drive: str | None, annotator: str | None, request: gr.Request | None = None) -> tuple:
    """After a reload: the item this annotator still holds in the drive, on screen again (nothing new is taken)."""
    idle = tuple(gr.skip() for _ in range(ITEM_OUTPUTS))
    if mode != MODES[3] or not drive:
        return idle
    who = known_labeller(annotator, request, drive_item=True)
    if who is None:  # no name yet: nothing to resume
        return idle
    item_id = drives.held(drive, who)
    if item_id is None:
        return idle
    return _show(
        preferences.get_item(item_id),
        "Welcome back: this item is still yours to label.",
        drives.describe(drives.progress(drive, who)),
    )


def _done(drive: str, progress: str) -> tuple:
    """The end of a drive for this annotator: said as thanks, not as an error (issue 42, W8)."""
    gr.Info(f"You have labelled everything the drive {drive!r} has for you. Thank you!")
    return (
        None,
        f"**Done: nothing left for you in {html.escape(drive)}.** Every item you have not labelled has its labels "
        "or is held by another annotator. Thank you!",
        *_response_updates([], 0),
        *_vote_controls(0, False),
        "",
        progress,
    )


def _show(item: preferences.ItemView, note: str, progress: str) -> tuple:
    """The outputs of `new_item` for a stored item, ready to vote on."""
    texts = [r.text for r in item.responses]
    n = len(texts)
    return (item.id, _prompt_md(item.prompt), *_response_updates(texts, n), *_vote_controls(n, True), note, progress)


def drive_progress(item_id: str, who: str) -> Any:
    """The progress line of the item's drive for this annotator (unchanged outside drives)."""
    drive = drives.drive_of(item_id)
    return drives.describe(drives.progress(drive, who)) if drive else gr.update()


def reveal(item: preferences.ItemView, annotator: str, reward_model: str | None) -> str:
    label = item.label_by(annotator)
    scores: list[float] | None = None
    if reward_model and reward_model != NO_REWARD_MODEL:
        try:
            scores = reward.scorer(reward_model).score(item.prompt, [r.text for r in item.responses])
        except (reward.RewardModelError, OSError) as error:
            gr.Warning(f"Reward model {reward_model!r} could not score: {error}")
    rows = [
        "| | source | temperature | seed |" + (" reward |" if scores else ""),
        "|---|---|---|---|" + ("---|" if scores else ""),
    ]
    for index, r in enumerate(item.responses):
        score = f" {scores[index]:+.3f} |" if scores else ""
        rows.append(
            f"| **{r.letter}** | `{html.escape(r.source)}` | {r.sampling.get('temperature', '')} | {r.seed if r.seed is not None else ''} |{score}"
        )
    head = f"**You voted: {label.describe()}.** Voting on this item is locked.\n\n" if label else ""
    agreement = ""
    if scores and label and label.choice not in ("tie", "both_bad") and len(label.ranking) > 1:
        best, worst = label.ranking[0], label.ranking[-1]
        agrees = min(scores[i] for i in best) > max(scores[i] for i in worst)
        agreement = f"\n\nReward model **{html.escape(reward_model or '')}** {'agrees ✓' if agrees else 'disagrees ✗'} with your vote."
    return head + "\n".join(rows) + agreement


def vote(
    item_id: str | None,
    choice: str,
    rationale: str,
    annotator: str,
    reward_model: str | None = None,
    request: gr.Request | None = None,
    ranking: str | None = None,
):
    """Record a vote (a ranking like 'B > A = C' when choice is "ranking"), lock the item, reveal
    sources (and reward scores). Outputs: the vote controls, the reveal."""
    who = _voter_identity(item_id, annotator, request)
    if not item_id:
        raise UserError("There is no item to vote on yet: press Next.")
    item, result = _submit(item_id, who, choice, rationale, ranking, request)
    if not result.created:
        gr.Info("This vote was already recorded.")
    return (
        *_vote_controls(len(item.responses), False),
        reveal(preferences.get_item(item_id), who, reward_model),
        drive_progress(item_id, who),
    )


def _submit(
    item_id: str, who: str, choice: str, rationale: str | None, ranking: str | None, request: gr.Request | None
) -> tuple[preferences.ItemView, preferences.VoteResult]:
    """Store one vote (a ranking text like 'B > A = C' when choice is "ranking"): the item as it
    was before the vote, and the result."""
    item = preferences.get_item(item_id)
    groups = preferences.parse_ranking(ranking or "", len(item.responses)) if choice == "ranking" else None
    result = preferences.submit_label(
        item_id,
        who,
        choice,
        ranking=groups,
        rationale=rationale or "",
        session_id=session_key(request),
        client=client_key(request),
    )
    return item, result


def _voter_identity(item_id: str | None, annotator: str | None, request: gr.Request | None) -> str:
    """Who votes: anonymous visitors only on a label drive's items."""
    in_drive = item_id is not None and drives.drive_of(item_id) is not None
    return labeller(annotator, request, "label items outside a label drive", drive_item=in_drive)


def _voter(choice: str):
    """A click handler for one vote button (a closure per button: no late binding)."""

    def handler(
        item_id: str | None,
        rationale: str,
        annotator: str,
        reward_model: str | None = None,
        request: gr.Request | None = None,
    ):
        return vote(item_id, choice, rationale, annotator, reward_model, request)

    return handler


def vote_api(
    item_id: str, choice: str, annotator: str, rationale: str = "", ranking: str = "", request: gr.Request | None = None
) -> dict:
    """Vote from a script: choice is A, B, tie, both_bad, up, down or ranking (with ranking like 'B > A = C').

    Returns {"created": bool, "choice": str, "ranking": [[positions]], "item_id": str}; the same vote
    twice returns created=false, a different vote on a voted item is refused.
    """
    _, result = _submit(item_id, _voter_identity(item_id, annotator, request), choice, rationale, ranking, request)
    return {
        "created": result.created,
        "choice": result.label.choice,
        "ranking": result.label.ranking,
        "item_id": item_id,
    }


def drive_next(drive: str, annotator: str, request: gr.Request | None = None) -> dict:
    """The next item of a label drive for this annotator, from a script.

    Returns {"item_id", "prompt": [{role, content}], "responses": [{"letter", "text"}], "progress"}
    -- item_id is None when nothing is left for them. Sources stay hidden, and gold items look like
    any other. Vote with /vote.
    """
    who = labeller(annotator, request, drive_item=True)
    item_id = drives.take(drive, who, client=client_key(request))
    progress = drives.progress(drive, who, others=False)
    if item_id is None:
        return {"item_id": None, "prompt": [], "responses": [], "progress": progress}
    item = preferences.get_item(item_id)
    return {
        "item_id": item.id,
        "prompt": [m.to_json() for m in item.prompt],
        "responses": [{"letter": r.letter, "text": r.text} for r in item.responses],
        "progress": progress,
    }


def vote_ranking(
    item_id: str | None,
    ranking: str,
    rationale: str,
    annotator: str,
    reward_model: str | None = None,
    request: gr.Request | None = None,
):
    return vote(item_id, "ranking", rationale, annotator, reward_model, request, ranking=ranking)


# --- prompt sets -------------------------------------------------------------------------------


@signed_in("add prompt sets")
def upload_prompt_set(file: str | None, name: str, request: gr.Request | None = None):
    if not file:
        raise UserError("Choose a JSONL or CSV file with a 'prompt' column.")
    with tempfile.TemporaryDirectory() as tmp:
        copied = copy_upload(file, Path(tmp), max_bytes=sft_data.MAX_FILE_BYTES, allowed_suffixes=PROMPT_SUFFIXES)
        prompts, problems = preference_data.read_prompts(copied)
    added = preferences.add_prompt_set(name or Path(file).stem, prompts)
    message = f"Added {added} new prompts to **{html.escape(name or Path(file).stem)}**."
    if problems:
        message += f"  \n{len(problems)} rows skipped: " + "; ".join(str(p) for p in problems[:5])
    return message, gr.update(choices=list(preferences.prompt_sets()), value=name or Path(file).stem)


def reward_model_choices() -> list[tuple[str, str]]:
    return [(NO_REWARD_MODEL, NO_REWARD_MODEL)] + reward.choices()


# --- layout ------------------------------------------------------------------------------------


def _source_slot(letter: str, temperature: float):
    with gr.Row(visible=letter in "AB") as row:
        adapter = LiveDropdown(adapter_choices, fallback=adapters.BASE_CHOICE, label=f"Source {letter}: model", scale=3)
        temp = control(SamplingParams, "temperature", value=temperature, label="temperature", info=None, scale=2)
        seed = control(SamplingParams, "seed", label="seed", info="-1 random", scale=1)
    return row, adapter, temp, seed


@dataclass
class Labelling:
    """What the page remembers of the Label tab (playground.remembered), and how it resumes a drive."""

    mode: gr.Radio
    drive: gr.Dropdown
    resume: Callable[[Any], Any]


def build(demo: gr.Blocks, shared: Shared) -> Labelling:
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Accordion("Guidelines", open=False):
                gr.Markdown((ASSETS / "guidelines.md").read_text(encoding="utf-8"))
            mode = gr.Radio(list(MODES), value=MODES[0], label="Prompts")
            prompt = gr.Textbox(label="Prompt", lines=3, value="Give me three tips for staying focused while studying.")
            drive = LiveDropdown(drives.names, label="Label drive", elem_id="label-drive", visible=False, restored=True)
            with gr.Column(visible=False) as set_box:
                with gr.Row():
                    prompt_set = LiveDropdown(lambda: list(preferences.prompt_sets()), label="Prompt set", scale=3)
                    set_upload = gr.UploadButton("Upload set", file_types=list(PROMPT_SUFFIXES), scale=1, size="sm")
                set_name = gr.Textbox(label="Name for an uploaded set", placeholder="defaults to the file name")
                set_status = gr.Markdown()
            with gr.Column() as generation_box:  # only modes that generate new items need sources
                n_responses = gr.Radio([2, 3, 4], value=2, label="Responses per item")
                slots = [_source_slot(letter, t) for letter, t in zip("ABCD", (0.7, 1.0, 0.7, 1.0), strict=False)]
                gr.Markdown(
                    "<span class='muted'>Sources are generated together in one batched call and shown in random order.</span>"
                )
            reward_pick = LiveDropdown(
                reward_model_choices, fallback=NO_REWARD_MODEL, label="Reward model to reveal scores"
            )
        with gr.Column(scale=2):
            with gr.Row():
                next_button = gr.Button("Next item (N)", variant="primary", elem_id="pref-next", scale=3)
                item_id = gr.Textbox(label="Item id", interactive=False, scale=1, max_lines=1, elem_id="pref-item-id")
            progress = gr.Markdown(elem_id="drive-progress")
            prompt_view = gr.Markdown()
            with gr.Row():
                boxes = []
                for index, letter in enumerate("ABCD"):
                    with gr.Column(min_width=200):
                        boxes.append(
                            gr.Textbox(
                                label=f"Response {letter}", lines=10, max_lines=24, interactive=False, visible=index < 2
                            )
                        )
            with gr.Row() as vote_row:
                vote_a = gr.Button("A is better (1)", elem_id="vote-a")
                vote_b = gr.Button("B is better (2)", elem_id="vote-b")
                vote_tie = gr.Button("Tie (3)", elem_id="vote-tie")
                vote_bad = gr.Button("Both bad (4)", elem_id="vote-bad")
            ranking = gr.Textbox(label="Ranking", placeholder="e.g. B > A = C", visible=False)
            rank_button = gr.Button("Submit ranking", visible=False)
            rationale = gr.Textbox(label="Rationale (optional)", lines=2)
            revealed = gr.Markdown(elem_id="pref-revealed")

    mode.change(
        lambda chosen: [
            gr.update(visible=chosen == MODES[0]),
            gr.update(visible=chosen == MODES[1]),
            gr.update(visible=chosen == MODES[3]),
            gr.update(visible=chosen in MODES[:2]),
        ],
        mode,
        [prompt, set_box, drive, generation_box],
        api_visibility="private",
    )
    n_responses.change(
        lambda n: [gr.update(visible=i < int(n)) for i in range(4)],
        n_responses,
        [s[0] for s in slots],
        api_visibility="private",
    )
    slot_kwargs: dict[str, Any] = {}
    for letter, (_, adapter, temp, seed) in zip("abcd", slots, strict=False):
        slot_kwargs |= {f"adapter_{letter}": adapter, f"temperature_{letter}": temp, f"seed_{letter}": seed}
    slot_kwargs["max_new_tokens"] = shared.sampling.max_new_tokens
    slot_kwargs["drive"] = drive
    vote_controls = [vote_row, vote_a, vote_b, vote_tie, vote_bad, ranking, rank_button]
    outputs = [item_id, prompt_view, *boxes, *vote_controls, revealed, progress]
    next_button.click(
        new_item,
        [mode, prompt, prompt_set, n_responses, shared.annotator],
        outputs,
        inputs_kwargs=slot_kwargs,
        api_name="new_item",
        **MODEL_EVENTS,
    )
    vote_outputs = [*vote_controls, revealed, progress]
    for button, choice in ((vote_a, "A"), (vote_b, "B"), (vote_tie, "tie"), (vote_bad, "both_bad")):
        button.click(
            _voter(choice), [item_id, rationale, shared.annotator, reward_pick], vote_outputs, api_visibility="private"
        )
    rank_button.click(
        vote_ranking,
        [item_id, ranking, rationale, shared.annotator, reward_pick],
        vote_outputs,
        api_name="vote_ranking",
    )
    gr.api(vote_api, api_name="vote")
    gr.api(drive_next, api_name="drive_next")
    cleared_first([set_upload.upload], [set_status]).then(
        upload_prompt_set, [set_upload, set_name], [set_status, prompt_set], api_name="upload_prompt_set"
    )

    def resume(loaded: Any) -> None:
        loaded.then(resume_held, [mode, drive, shared.annotator], outputs, api_visibility="private")

    return Labelling(mode, drive, resume)


KEYBOARD_JS = """
<script>
document.addEventListener('keydown', (event) => {
  const target = event.target;
  if (target && (target.tagName === 'INPUT' || target.tagName === 'TEXTAREA' || target.isContentEditable)) return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const ids = {'1': 'vote-a', '2': 'vote-b', '3': 'vote-tie', '4': 'vote-bad', 'n': 'pref-next', 'N': 'pref-next'};
  const id = ids[event.key];
  if (!id) return;
  const button = document.getElementById(id);
  if (button && button.offsetParent !== null && !button.disabled) { button.click(); event.preventDefault(); }
});
</script>
"""
