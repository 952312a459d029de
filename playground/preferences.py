"""Preferences tab: compare responses blind, vote, reveal; the dataset, its export and import."""

from __future__ import annotations

import html
import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from pipelines import adapters, comparisons, models, preferences, reward, sft_data
from pipelines.files import UploadError, copy_upload
from pipelines.sampling import InvalidParameter, SamplingParams

from .errors import UserError
from .controls import ASSETS, MODEL_EVENTS, cleared_first
from .sidebar import Shared, adapter_choices, labeller, selected_adapter
from .guard import admin_only, signed_in
from .pickers import LiveDropdown

MODES = ("Type a prompt", "From a prompt set", "Queue: items you have not voted on yet")
NO_REWARD_MODEL = "(none)"
UI_UPDATE_SECONDS = 0.1
PROMPT_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".tsv")
IMPORT_SUFFIXES = (".jsonl", ".json", ".parquet")


def _who(annotator: str | None, request: gr.Request | None) -> str:
    return labeller(annotator, request)


def _response_updates(texts: list[str], n: int) -> list[Any]:
    return [
        gr.update(value=texts[i] if i < len(texts) else "", visible=i < n) for i in range(preferences.MAX_RESPONSES)
    ]


VOTE_CONTROLS = 7  # the A/B row, its four buttons, the ranking box and its button


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


def new_item(
    mode: str,
    prompt: str,
    prompt_set: str | None,
    n_responses: float,
    annotator: str,
    adapter_a: str | None = None,
    temperature_a: float = 0.7,
    seed_a: float = -1,
    adapter_b: str | None = None,
    temperature_b: float = 1.0,
    seed_b: float = -1,
    adapter_c: str | None = None,
    temperature_c: float = 0.7,
    seed_c: float = -1,
    adapter_d: str | None = None,
    temperature_d: float = 1.0,
    seed_d: float = -1,
    max_new_tokens: float = 128,
    request: gr.Request = None,
):
    """Load or generate the next item. Outputs: item id, prompt, 4 responses, vote controls, reveal."""
    who = _who(annotator, request)
    if mode == MODES[2]:
        item = preferences.next_unlabelled(who)
        if item is None:
            raise UserError(
                "The queue is empty: you have voted on every stored item (import some, or send them from Chat)."
            )
        texts = [r.text for r in item.responses]
        n = len(texts)
        yield (
            item.id,
            _prompt_md(item.prompt),
            *_response_updates(texts, n),
            *_vote_controls(n, True),
            f"Item from the queue ({html.escape(item.origin)}).",
        )
        return
    if mode == MODES[1]:
        if not prompt_set:
            raise UserError("Upload or choose a prompt set first.")
        try:
            messages = preferences.draw_prompt(prompt_set)
        except preferences.PreferenceError as error:
            raise UserError(str(error)) from error
        origin = f"promptset:{prompt_set}"
    else:
        if not prompt or not prompt.strip():
            raise UserError("Type a prompt to compare responses on.")
        messages = [preferences.Message("user", prompt.strip())]
        origin = "typed"
    n = int(n_responses)
    slots = [
        (adapter_a, temperature_a, seed_a),
        (adapter_b, temperature_b, seed_b),
        (adapter_c, temperature_c, seed_c),
        (adapter_d, temperature_d, seed_d),
    ][:n]
    try:
        sources = [
            comparisons.Source(
                adapter=selected_adapter(adapter),
                params=SamplingParams(
                    temperature=float(temperature),
                    max_new_tokens=int(max_new_tokens),
                    seed=None if seed is None or float(seed) < 0 else int(seed),
                ),
            )
            for adapter, temperature, seed in slots
        ]
    except InvalidParameter as error:
        raise UserError(str(error)) from error
    prompt_md = _prompt_md(messages)
    last = 0.0
    try:
        for texts, item in comparisons.stream_item(
            models.get_handle(), messages, sources, origin=origin, created_by=who
        ):
            now = time.monotonic()
            if item is not None:
                yield (
                    item.id,
                    prompt_md,
                    *_response_updates(texts, n),
                    *_vote_controls(n, True),
                    "Which response do you prefer? Sources are hidden until you vote.",
                )
            elif now - last >= UI_UPDATE_SECONDS:
                last = now
                yield (
                    None,
                    prompt_md,
                    *_response_updates(texts, n),
                    *_vote_controls(n, False),
                    "Generating all responses in one batch…",
                )
    except (InvalidParameter, models.ModelUnavailable, preferences.PreferenceError) as error:
        raise UserError(str(error)) from error


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
    head = f"**You voted: {_describe(label)}.** Voting on this item is locked.\n\n" if label else ""
    agreement = ""
    if scores and label and label.choice not in ("tie", "both_bad") and len(label.ranking) > 1:
        best, worst = label.ranking[0], label.ranking[-1]
        agrees = min(scores[i] for i in best) > max(scores[i] for i in worst)
        agreement = f"\n\nReward model **{html.escape(reward_model)}** {'agrees ✓' if agrees else 'disagrees ✗'} with your vote."
    return head + "\n".join(rows) + agreement


def _describe(label: preferences.LabelView | None) -> str:
    if label is None:
        return "—"
    if label.choice in ("A", "B"):
        return f"{label.choice} better"
    if label.choice == "both_bad":
        return "both bad"
    if label.choice == "ranking":
        return " > ".join(" = ".join(preferences.LETTERS[p] for p in group) for group in label.ranking)
    return label.choice


def vote(
    item_id: str | None,
    choice: str,
    rationale: str,
    annotator: str,
    reward_model: str | None = None,
    request: gr.Request = None,
):
    """Record a vote, lock the item, reveal sources (and reward scores). Outputs: 3 controls, reveal."""
    who = _who(annotator, request)
    if not item_id:
        raise UserError("There is no item to vote on yet: press Next.")
    try:
        result = preferences.submit_label(
            item_id,
            who,
            choice,
            rationale=rationale or "",
            session_id=getattr(request, "session_hash", None),
            ranking=None,
        )
    except preferences.PreferenceError as error:
        raise UserError(str(error)) from error
    item = preferences.get_item(item_id)
    if not result.created:
        gr.Info("This vote was already recorded.")
    return (*_vote_controls(len(item.responses), False), reveal(item, who, reward_model))


def _voter(choice: str):
    """A click handler for one vote button (a closure per button: no late binding)."""

    def handler(
        item_id: str | None, rationale: str, annotator: str, reward_model: str | None = None, request: gr.Request = None
    ):
        return vote(item_id, choice, rationale, annotator, reward_model, request)

    return handler


def vote_api(
    item_id: str, choice: str, annotator: str, rationale: str = "", ranking: str = "", request: gr.Request = None
) -> dict:
    """Vote from a script: choice is A, B, tie, both_bad, up, down or ranking (with ranking like 'B > A = C').

    Returns {"created": bool, "choice": str, "ranking": [[positions]], "item_id": str}; the same vote
    twice returns created=false, a different vote on a voted item is refused.
    """
    who = _who(annotator, request)
    try:
        item = preferences.get_item(item_id)
        groups = preferences.parse_ranking(ranking, len(item.responses)) if choice == "ranking" else None
        result = preferences.submit_label(
            item_id,
            who,
            choice,
            ranking=groups,
            rationale=rationale or "",
            session_id=getattr(request, "session_hash", None),
        )
    except preferences.PreferenceError as error:
        raise UserError(str(error)) from error
    return {
        "created": result.created,
        "choice": result.label.choice,
        "ranking": result.label.ranking,
        "item_id": item_id,
    }


def vote_ranking(
    item_id: str | None,
    ranking: str,
    rationale: str,
    annotator: str,
    reward_model: str | None = None,
    request: gr.Request = None,
):
    who = _who(annotator, request)
    if not item_id:
        raise UserError("There is no item to vote on yet: press Next.")
    item = preferences.get_item(item_id)
    try:
        groups = preferences.parse_ranking(ranking or "", len(item.responses))
        result = preferences.submit_label(
            item_id,
            who,
            "ranking",
            ranking=groups,
            rationale=rationale or "",
            session_id=getattr(request, "session_hash", None),
        )
    except preferences.PreferenceError as error:
        raise UserError(str(error)) from error
    if not result.created:
        gr.Info("This vote was already recorded.")
    return (*_vote_controls(len(item.responses), False), reveal(preferences.get_item(item_id), who, reward_model))


# --- prompt sets -------------------------------------------------------------------------------


@signed_in("add prompt sets")
def upload_prompt_set(file: str | None, name: str, request: gr.Request = None):
    if not file:
        raise UserError("Choose a JSONL or CSV file with a 'prompt' column.")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            copied = copy_upload(file, Path(tmp), max_bytes=sft_data.MAX_FILE_BYTES, allowed_suffixes=PROMPT_SUFFIXES)
            prompts, problems = preferences.read_prompts(copied)
        added = preferences.add_prompt_set(name or Path(file).stem, prompts)
    except (UploadError, sft_data.DataError, preferences.PreferenceError) as error:
        raise UserError(str(error)) from error
    message = f"Added {added} new prompts to **{html.escape(name or Path(file).stem)}**."
    if problems:
        message += f"  \n{len(problems)} rows skipped: " + "; ".join(str(p) for p in problems[:5])
    return message, gr.update(choices=list(preferences.prompt_sets()), value=name or Path(file).stem)


# --- the dataset -------------------------------------------------------------------------------


def dataset_view():
    """Totals and quality signals, labels per annotator, and the source leaderboard."""
    items = preferences.list_items(limit=100_000)
    st = preferences.stats(items)

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value:.0%}"

    text = (
        f"**{st['items']}** items, **{st['labels']}** labels ({st['labelled_items']} items labelled).  \n"
        f"Agreement between annotators on shared items: **{pct(st['agreement'])}** over {st['agreement_pairs']} pairs of votes.  \n"
        f"Position bias: the left response (A) won **{pct(st['left_wins'])}** of {st['decisive_votes']} decisive A/B votes "
        f"(50% means no bias).  \nTie rate **{pct(st['tie_rate'])}**, both-bad rate **{pct(st['both_bad_rate'])}**."
    )
    annotators = pd.DataFrame(list(st["per_annotator"].items()), columns=["annotator", "labels"])
    ratings = preferences.leaderboard(items)
    board = pd.DataFrame(ratings, columns=["source", "rating", "wins", "losses", "ties", "comparisons"])
    if not ratings:
        text += f"  \nLeaderboard: {preferences.leaderboard_gap(items)}"
    recent = pd.DataFrame(
        [
            [
                i.id,
                i.prompt_text[:80],
                len(i.responses),
                ", ".join(f"{lb.annotator}: {_describe(lb)}" for lb in i.labels),
            ]
            for i in items[:50]
        ],
        columns=["item", "prompt", "responses", "votes"],
    )
    return text, annotators, board, recent


@admin_only("export preference data")
def export_labels(fmt: str, request: gr.Request = None) -> str:
    folder = Path(tempfile.mkdtemp(prefix="prefs-export-"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if fmt == "dataset":
        import shutil

        target = folder / f"preferences-{stamp}"
        preferences.export(target, "dataset")
        return shutil.make_archive(str(target), "zip", root_dir=folder, base_dir=target.name)
    suffix = {"jsonl": "jsonl", "parquet": "parquet", "unpaired": "unpaired.jsonl"}[fmt]
    result = preferences.export(folder / f"preferences-{stamp}.{suffix}", fmt)
    gr.Info(f"Exported {result['rows']} rows ({result['pairs']} pairs, {result['unpaired']} unpaired).")
    return result["path"]


@admin_only("import preference data")
def import_labels(file: str | None, request: gr.Request = None) -> str:
    if not file:
        raise UserError("Choose a preference file (JSONL or Parquet in trl's format).")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            copied = copy_upload(file, Path(tmp), max_bytes=200_000_000, allowed_suffixes=IMPORT_SUFFIXES)
            result = preferences.import_file(copied)
    except (UploadError, preferences.PreferenceError) as error:
        raise UserError(str(error)) from error
    text = f"Imported **{result.imported}** rows."
    if result.errors:
        text += f" {len(result.errors)} rows skipped:  \n" + "  \n".join(
            f"line {e['line']}: {html.escape(e['error'])}" for e in result.errors[:20]
        )
    return text


@admin_only("export preference data")
def push_labels(repo_id: str, token: str, request: gr.Request = None) -> str:
    if not repo_id or "/" not in repo_id:
        raise UserError("Give a dataset repository id like 'my-team/preferences'.")
    try:
        pushed = preferences.push_to_hub(repo_id.strip(), token.strip() or None)
    except preferences.PreferenceError as error:
        raise UserError(str(error)) from error
    configs = ", ".join(f"`{name}` ({rows} rows)" for name, rows in pushed["configs"].items())
    return (
        f"Pushed to {pushed['url']}: {configs}. Load one with "
        f"`load_dataset({repo_id.strip()!r}, {next(iter(pushed['configs']))!r})`."
    )


@admin_only("delete data")
def delete_item(item_id: str, request: gr.Request = None) -> str:
    if not item_id or not item_id.strip():
        raise UserError("Give the id of the item to delete (see the table).")
    if not preferences.delete_item(item_id.strip()):
        raise UserError(f"No item {item_id!r}.")
    return f"Deleted item {html.escape(item_id)} and its votes."


def reward_model_choices() -> list[str]:
    return [NO_REWARD_MODEL] + [m["name"] for m in reward.list_models()]


# --- layout ------------------------------------------------------------------------------------


def _source_slot(letter: str, temperature: float):
    with gr.Row(visible=letter in "AB") as row:
        adapter = LiveDropdown(adapter_choices, fallback=adapters.BASE_CHOICE, label=f"Source {letter}: model", scale=3)
        temp = gr.Slider(0, 2, value=temperature, step=0.05, label="temperature", scale=2)
        seed = gr.Number(value=-1, precision=0, label="seed", scale=1, info="-1 random")
    return row, adapter, temp, seed


def build_label(demo: gr.Blocks, shared: Shared) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Accordion("Guidelines", open=False):
                gr.Markdown((ASSETS / "guidelines.md").read_text(encoding="utf-8"))
            mode = gr.Radio(list(MODES), value=MODES[0], label="Prompts")
            prompt = gr.Textbox(label="Prompt", lines=3, value="Give me three tips for staying focused while studying.")
            with gr.Row():
                prompt_set = LiveDropdown(lambda: list(preferences.prompt_sets()), label="Prompt set", scale=3)
                set_upload = gr.UploadButton("Upload set", file_types=list(PROMPT_SUFFIXES), scale=1, size="sm")
            set_name = gr.Textbox(label="Name for an uploaded set", placeholder="defaults to the file name")
            set_status = gr.Markdown()
            n_responses = gr.Radio([2, 3, 4], value=2, label="Responses per item")
            slots = [_source_slot(letter, t) for letter, t in zip("ABCD", (0.7, 1.0, 0.7, 1.0))]
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

    n_responses.change(
        lambda n: [gr.update(visible=i < int(n)) for i in range(4)],
        n_responses,
        [s[0] for s in slots],
        api_visibility="private",
    )
    slot_kwargs: dict[str, Any] = {}
    for letter, (_, adapter, temp, seed) in zip("abcd", slots):
        slot_kwargs |= {f"adapter_{letter}": adapter, f"temperature_{letter}": temp, f"seed_{letter}": seed}
    slot_kwargs["max_new_tokens"] = shared.sampling.max_new_tokens
    vote_controls = [vote_row, vote_a, vote_b, vote_tie, vote_bad, ranking, rank_button]
    outputs = [item_id, prompt_view, *boxes, *vote_controls, revealed]
    next_button.click(
        new_item,
        [mode, prompt, prompt_set, n_responses, shared.annotator],
        outputs,
        inputs_kwargs=slot_kwargs,
        api_name="new_item",
        **MODEL_EVENTS,
    )
    vote_outputs = [*vote_controls, revealed]
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
    cleared_first([set_upload.upload], [set_status]).then(
        upload_prompt_set, [set_upload, set_name], [set_status, prompt_set], api_name="upload_prompt_set"
    )


def build_dataset(demo: gr.Blocks) -> None:
    with gr.Row():
        refresh = gr.Button("Refresh", size="sm")
    summary = gr.Markdown()
    with gr.Row():
        annotators = gr.Dataframe(label="Labels per annotator", interactive=False)
        board = gr.Dataframe(label="Leaderboard (Bradley–Terry ratings of the sources)", interactive=False)
    recent = gr.Dataframe(label="Recent items", interactive=False, wrap=True, max_height=320)
    with gr.Row():
        with gr.Column():
            gr.Markdown("#### Export for trl")
            fmt = gr.Radio(
                ["jsonl", "parquet", "dataset", "unpaired"],
                value="jsonl",
                label="Format",
                info="pairs in trl's conversational prompt/chosen/rejected; 'unpaired' = KTO prompt/completion/label",
            )
            gr.Markdown(
                "<span class='muted'>Unpaired rows: a **tie** exports both responses with `label: true` (both "
                "acceptable), **both bad** exports both with `label: false`, 👍/👎 as voted. Ties and both-bad say "
                "nothing about order, so they are never pairs.</span>"
            )
            export_button = gr.Button("Export")
            exported = gr.File(label="Download", interactive=False)
        with gr.Column():
            gr.Markdown("#### Import")
            import_file = gr.File(
                label="Preference file (JSONL / Parquet)", file_types=list(IMPORT_SUFFIXES), type="filepath"
            )
            imported = gr.Markdown()
        with gr.Column():
            gr.Markdown("#### Push to the Hub (needs network)")
            repo = gr.Textbox(label="Dataset repo", placeholder="team/preferences")
            token = gr.Textbox(label="Token", type="password")
            push_button = gr.Button("Push")
            pushed = gr.Markdown()
    with gr.Accordion("Delete an item (admin)", open=False):
        with gr.Row():
            delete_id = gr.Textbox(label="Item id", scale=3)
            delete_button = gr.Button("Delete", variant="stop", scale=1)
        deleted = gr.Markdown()

    view_outputs = [summary, annotators, board, recent]
    gr.on([refresh.click, demo.load], dataset_view, None, view_outputs, api_name="preference_stats")
    export_button.click(export_labels, fmt, exported, api_name="export_preferences")
    cleared_first([import_file.upload], [imported]).then(
        import_labels, import_file, imported, api_name="import_preferences"
    ).then(dataset_view, None, view_outputs, api_visibility="private")
    push_button.click(push_labels, [repo, token], pushed, api_name="push_preferences")
    delete_button.click(delete_item, delete_id, deleted, api_name="delete_item").then(
        dataset_view, None, view_outputs, api_visibility="private"
    )


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
