"""Chat tab: multi-turn chat through the model's chat template, with the exact prompt on show."""

from __future__ import annotations

import html
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from pipelines.access import get_policy
from pipelines.engine import chat, models
from pipelines.engine.sampling import SamplingParams
from pipelines.labels import comparisons
from pipelines.replay import record

from . import capsule_files, history
from .controls import MODEL_EVENTS, STOPS, Throttle, fill_when_model_ready, how_it_works, to_params, waiting_note
from .errors import UserError
from .guard import signed_in
from .sidebar import Shared, annotator_name, labeller, selected_adapter, session_key
from .spec_controls import with_spec_parameters

UI_UPDATE_SECONDS = 0.05
MAX_IMPORT_BYTES = 5_000_000


def to_messages(history: list[dict[str, Any]] | None) -> list[chat.Message]:
    """Chatbot value (Gradio 6 content blocks) -> plain text messages."""
    return chat.normalise(history or [])


def to_chatbot(messages: list[chat.Message], authors: list[str | None] | None = None) -> list[dict[str, Any]]:
    """Messages for the Chatbot; `authors` (one per shown message) keeps who wrote each reply."""
    shown: list[dict[str, Any]] = []
    for message in (m for m in messages if m.role != "system"):
        entry: dict[str, Any] = message.to_json()
        author = authors[len(shown)] if authors and len(shown) < len(authors) else None
        if author and message.role == "assistant":
            entry["metadata"] = {"log": author}  # carried with the message, not shown in it, never sent to the model
        shown.append(entry)
    return shown


def authors_of(history: list[dict[str, Any]] | None) -> list[str | None]:
    """Who wrote each shown message of a Chatbot value (the model and adapter of each reply; None elsewhere)."""
    found = []
    for entry in history or []:
        if not isinstance(entry, dict) or entry.get("role") == "system":
            continue
        metadata = entry.get("metadata")
        log = metadata.get("log") if isinstance(metadata, dict) else None
        found.append(str(log)[:200] if log else None)
    return found


def written_by(shown: list[dict[str, Any]]) -> str:
    """One line naming the model (and adapter) behind each reply, in order (issue 42: Chat did not say)."""
    replies = [entry for entry in shown if entry.get("role") == "assistant"]
    named = [((entry.get("metadata") or {}).get("log") or "unknown") for entry in replies]
    if not named:
        return ""
    parts = [f"{index} {html.escape(author)}" for index, author in enumerate(named, start=1)]
    return "**Written by** (reply: model + adapter): " + " · ".join(parts)


def author_label(adapter: str | None) -> str:
    handle = models.get_handle()
    server = handle.remote_server
    name = f"{handle.name} on {server.kind}" if server is not None and not adapter else handle.name
    return f"{name} + {adapter}" if adapter else f"{name} (base)"


def _system(system_prompt: str | None) -> str | None:
    return system_prompt if system_prompt and system_prompt.strip() else None


def prompt_report(prompt: chat.ChatPrompt) -> str:
    share = prompt.prompt_tokens / prompt.context_window
    line = (
        f"**{prompt.prompt_tokens:,}** of **{prompt.context_window:,}** context tokens ({share:.0%}), "
        f"up to {prompt.max_new_tokens:,} more for the reply."
    )
    notice = prompt.notice()
    server = models.get_handle().remote_server
    if server is not None:
        line += (
            f"  \nThe {server.kind} server at `{server.base_url}` answers without an adapter: it applies its own "
            f"model's chat template to these messages, so the rendering above is the local model's (the one an "
            "adapter answers with), and the token counts are the local tokenizer's."
        )
    return line + (f"  \n⚠️ {notice}." if notice else "")


def _respond(
    history: list[dict[str, Any]],
    system_prompt: str | None,
    adapter: str | None,
    sampling: dict[str, Any],
    run_id: str | None = None,
) -> Iterator[tuple[Any, ...]]:
    """Stream the assistant's reply to `history` (which ends with a user message); Stop ends it (run_id).
    A reply that finished also leaves its replay capsule (for *Save capsule*); a stopped one does not."""
    params = to_params(sampling)
    messages = to_messages(history)
    shown = to_chatbot(messages, authors_of(history))
    author = author_label(selected_adapter(adapter))
    if not STOPS.begin(run_id):  # stopped while it waited for its turn: nothing to show
        yield shown, gr.skip(), gr.skip(), gr.skip()
        return
    throttle = Throttle(UI_UPDATE_SECONDS)
    notified = False
    handle, chosen = models.get_handle(), selected_adapter(adapter)
    for completion, prompt in chat.stream_reply(
        handle, messages, params, system_prompt=_system(system_prompt), adapter=chosen
    ):
        if prompt.notice() and not notified:
            gr.Info(prompt.notice().capitalize() + ".")
            notified = True
        stopped = STOPS.stopped(run_id)
        if throttle.due(final=completion.done or stopped, rows=[completion]):
            reply = {
                "role": "assistant",
                "content": completion.text or waiting_note([completion]),
                "metadata": {"log": author},
            }
            conversation = shown + [reply]
            capsule = gr.skip()
            if completion.done and not stopped:
                capsule = record.chat(
                    handle, messages, completion, prompt, system_prompt=_system(system_prompt), adapter=chosen
                )
            yield conversation, prompt.text, prompt_report(prompt) + "  \n" + written_by(conversation), capsule
        if stopped:  # the reply ends itself with what it has; its .then frees the conversation
            return


BUSY_MESSAGE = "A reply is still being written: wait for it, or press Stop."


def _reply_buttons(enabled: bool) -> tuple[dict, dict]:
    """Send and Regenerate, switched in the same response that sets `busy`.

    An enabled Send then always means a new message is accepted: switching them in a follow-up
    event would leave a moment where the reply looks finished but Send is refused.
    """
    return gr.update(interactive=enabled), gr.update(interactive=enabled)


def take_message(message: str, history: list[dict[str, Any]] | None, busy: bool):
    """First step of Send: move the message into the conversation, clear the box, mark busy.

    Refusing while a reply streams keeps the typed text in the box (nothing is lost) and stops
    two streams from writing one conversation.
    """
    if busy:
        raise UserError(BUSY_MESSAGE)
    if not message or not message.strip():
        raise UserError("Type a message first.")
    return (
        "",
        to_chatbot(to_messages(history), authors_of(history)) + [{"role": "user", "content": message}],
        True,
        *_reply_buttons(False),
        STOPS.new_run(),
    )


def give_back(history: list[dict[str, Any]] | None, draft: str | None) -> tuple[Any, Any]:
    """A send that failed before its reply began (a bad stop string, a full queue): its message leaves
    the conversation and goes back in the box, to fix and send again -- not a user turn without a reply
    that the next send doubles (issue 42, W4)."""
    messages = to_chatbot(to_messages(history), authors_of(history))
    if messages and messages[-1]["role"] == "user" and not (draft or "").strip():
        return messages[:-1], messages[-1]["content"]
    return gr.skip(), gr.skip()


def claim(busy: bool) -> tuple[bool, dict, dict, str]:
    """First step of Regenerate: only one reply at a time per conversation."""
    if busy:
        raise UserError(BUSY_MESSAGE)
    return True, *_reply_buttons(False), STOPS.new_run()


def release() -> tuple[bool, dict, dict]:
    return False, *_reply_buttons(True)


def stop_reply(run_id: str | None) -> tuple[Any, Any, Any]:
    """Stop: a reply that is streaming ends itself and its follow-up frees the conversation; one that
    never started is freed here (it will end before showing anything)."""
    if STOPS.stop(run_id):
        return gr.skip(), gr.skip(), gr.skip()
    return release()


def _until_last_user(history: list[dict[str, Any]] | None) -> tuple[list[dict[str, str]], str]:
    """History before the last user message, and that message's text."""
    messages = to_chatbot(to_messages(history), authors_of(history))
    for index in range(len(messages) - 1, -1, -1):
        if messages[index]["role"] == "user":
            return messages[:index], messages[index]["content"]
    raise UserError("There is no user message to work on yet.")


def answer(
    history: list[dict[str, Any]] | None,
    system_prompt: str | None,
    adapter: str | None = None,
    run_id: str | None = None,
    **sampling: Any,
):
    """Answer the last user message, replacing any reply it already had (= Regenerate)."""
    before, text = _until_last_user(history)
    yield from _respond(before + [{"role": "user", "content": text}], system_prompt, adapter, sampling, run_id)


def undo(history: list[dict[str, Any]] | None, busy: bool = False) -> tuple[list[dict[str, str]], str]:
    """Remove the last turn and put its message back in the box, to edit and resend."""
    if busy:
        raise UserError(BUSY_MESSAGE)
    before, text = _until_last_user(history)
    return before, text


def apply_edit(history: list[dict[str, Any]], busy: bool, edit_data: gr.EditData):
    """A user message edited in place: keep what came before it; the edited text is answered next."""
    if busy:
        raise UserError(BUSY_MESSAGE)
    messages = to_chatbot(to_messages(history), authors_of(history))
    index = edit_data.index if isinstance(edit_data.index, int) else edit_data.index[0]
    new_text = chat.flatten_content(edit_data.value)
    if not new_text.strip():
        raise UserError("The edited message is empty.")
    return messages[:index] + [{"role": "user", "content": new_text}], True, *_reply_buttons(False), STOPS.new_run()


API_KNOBS = ("max_new_tokens", "temperature", "top_k", "top_p", "min_p", "repetition_penalty")


def _chat_api(
    message: str,
    history: list[dict[str, Any]] | None = None,
    system_prompt: str | None = None,
    adapter: str | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Send `message` after `history` (OpenAI-style messages) and return the reply.

    Returns {"history": messages including the reply, "reply", "prompt_tokens",
    "completion_tokens", "dropped_turns", "finish_reason"}. Pass "history" back to continue.
    """
    if not message or not str(message).strip():
        raise UserError("message is empty")
    seed = settings.pop("seed", -1)
    params = SamplingParams(
        **{name: settings[name] for name in API_KNOBS},
        seed=None if seed is None or seed < 0 else seed,
        stop=tuple(settings.get("stop") or ()),
    )
    messages = to_messages(history) + [chat.Message("user", str(message))]
    completion, prompt = chat.reply(
        models.get_handle(),
        messages,
        params,
        system_prompt=_system(system_prompt),
        adapter=selected_adapter(adapter),
    )
    return {
        "history": to_chatbot(messages) + [{"role": "assistant", "content": completion.text}],
        "reply": completion.text,
        "prompt_tokens": prompt.prompt_tokens,
        "completion_tokens": len(completion.tokens),
        "dropped_turns": prompt.dropped_turns,
        "finish_reason": completion.finish_reason,
    }


# the script-facing parameters of /chat: the sampling knobs with SamplingParams' own defaults (one
# definition), a seed (-1: random) and stop strings
chat_api = with_spec_parameters(
    _chat_api, SamplingParams, API_KNOBS, extra={"seed": (int, -1), "stop": (list[str] | None, None)}
)


def feedback(
    history: list[dict[str, Any]] | None,
    system_prompt: str | None,
    annotator: str,
    like: gr.LikeData,
    request: gr.Request | None = None,
):
    """Thumbs up/down on a reply becomes a one-response preference item with its label."""
    index = like.index if isinstance(like.index, int) else like.index[0]
    if get_policy().sign_in:  # never anonymously: the reply's text is the visitor's to choose (an edited history)
        who = labeller(annotator, request, "rate replies", drive_item=False)
    else:
        who = annotator_name(annotator, request) or f"chat:{session_key(request) or 'anonymous'}"
    liked = like.liked is True or like.liked == "Like"
    comparisons.rate_reply(
        to_messages(history),
        index,
        liked,
        system_prompt=_system(system_prompt),
        annotator=who,
        model=models.get_handle().name,
        session_id=session_key(request),
    )
    gr.Info(f"Saved your {'👍' if liked else '👎'} as a preference label.")


@signed_in("queue comparisons for everyone's labelling")
def send_to_compare(
    history: list[dict[str, Any]] | None,
    system_prompt: str | None,
    adapter: str | None,
    annotator: str,
    request: gr.Request | None = None,
    **sampling: Any,
) -> None:
    """Queue the last reply against a fresh alternative as a comparison item for the Preferences tab."""
    comparisons.queue_reply_against_alternative(
        models.get_handle(),
        to_messages(history),
        to_params(sampling),
        system_prompt=_system(system_prompt),
        adapter=selected_adapter(adapter),
        created_by=annotator_name(annotator, request) or None,
    )
    gr.Info("Sent to the Preferences queue: choose 'Queue' there to vote on it.")


def preview(history: list[dict[str, Any]] | None, draft: str, system_prompt: str | None, max_new_tokens: float = 256):
    """The prompt the model would receive if `draft` were sent now (teaching: the chat template)."""
    messages = to_chatbot(to_messages(history), authors_of(history))
    if draft and draft.strip():
        messages.append({"role": "user", "content": draft})
    elif not messages or messages[-1]["role"] != "user":
        messages.append({"role": "user", "content": "…"})
    prompt = chat.build_prompt(
        models.get_handle(),
        chat.normalise(messages),
        system_prompt=_system(system_prompt),
        max_new_tokens=int(max_new_tokens),
    )
    return prompt.text, prompt_report(prompt)


def export_conversation(history: list[dict[str, Any]] | None, system_prompt: str | None) -> str:
    """Write the conversation as an OpenAI-style messages JSON file and return its path."""
    messages = to_messages(history)
    if not messages:
        raise UserError("Nothing to export yet.")
    folder = Path(tempfile.mkdtemp(prefix="chat-export-"))
    path = folder / "conversation.json"
    path.write_text(chat.export_json(messages, _system(system_prompt)), encoding="utf-8")
    return str(path)


def import_conversation(file: str | None) -> tuple[list[dict[str, Any]], Any]:
    """Load an exported (or any OpenAI-style) messages file to continue it."""
    if not file:
        raise UserError("Choose a .json file to import.")
    path = Path(file)
    if path.stat().st_size > MAX_IMPORT_BYTES:
        raise UserError(f"The file is larger than {MAX_IMPORT_BYTES // 1_000_000} MB.")
    messages = chat.import_file(path)
    system, rest = chat.split_system(messages)
    return to_chatbot(rest), system if system is not None else gr.update()


def model_default_system(stored: Any = None) -> dict:
    """The system prompt box open for editing, showing the kept conversation's system prompt (a reload)
    or else the loaded model's own default."""
    kept = history.newest(stored)
    if kept is not None and isinstance(kept.get("system_prompt"), str):
        return gr.update(value=kept["system_prompt"], interactive=True)
    return gr.update(value=chat.default_system_prompt(models.get_handle().tokenizer) or "", interactive=True)


def keep_conversation(messages: Any, system_prompt: str, stored: Any) -> list:
    """The history with this conversation newest: the same conversation a turn longer replaces its entry."""
    if not isinstance(messages, list) or not messages:
        return history.entries(stored)
    data = history.bounded({"messages": messages, "system_prompt": system_prompt or ""}, shed=())
    first = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"), "")

    def same(old: dict) -> bool:
        earlier = old.get("messages") or []
        return old.get("system_prompt") == (system_prompt or "") and earlier == messages[: len(earlier)]

    return history.pushed(stored, first if isinstance(first, str) else "conversation", data, replaces=same)


def restore_conversation(data: dict[str, Any]) -> list[Any]:
    messages = data.get("messages") if isinstance(data.get("messages"), list) else []
    return [messages, gr.update(value=history.text(data.get("system_prompt")), interactive=True)]


def load_capsule_file(file: str | None) -> list[Any]:
    """A chat capsule's conversation (up to the message it answered), system prompt, sampling values and
    adapter: Regenerate then writes the same reply on the same engine and machine kind."""
    document = capsule_files.opened(file, "chat", "Chat")
    settings, notes = capsule_files.settings_of(document, "↻ Regenerate")
    inputs = document["inputs"]
    messages = to_messages(inputs.get("messages") if isinstance(inputs.get("messages"), list) else [])
    conversation = to_chatbot(messages)  # a system message (a CLI conversation's) goes in the system prompt's box
    system = inputs.get("system_prompt") or next((m.content for m in messages if m.role == "system"), None)
    return [conversation, gr.update(value=system if isinstance(system, str) else ""), *settings, "  \n".join(notes)]


def build(demo: gr.Blocks, shared: Shared) -> None:
    sampling_kwargs = shared.sampling.kwargs()
    with gr.Row():
        with gr.Column(scale=3):
            system_prompt = gr.Textbox(
                value="",
                interactive=False,  # until the model's default is filled in (fill_when_model_ready)
                label="System prompt",
                info="the model's own default is shown; change it to steer the assistant",
                lines=2,
            )
            chatbot = gr.Chatbot(
                label="Conversation",
                elem_id="chat-conversation",
                height=480,
                editable="user",
                buttons=["copy", "copy_all"],
                placeholder="Say hello — replies stream from the local model.",
                feedback_options=("Like", "Dislike"),
            )
            with gr.Row():
                message = gr.Textbox(
                    show_label=False,
                    placeholder="Message (Enter to send, Shift+Enter for a new line)",
                    lines=1,  # Gradio submits on Enter only for single-line boxes; they still grow
                    max_lines=8,
                    scale=8,
                    elem_id="chat-message",
                )
                send_button = gr.Button("Send", variant="primary", scale=1)
                stop_button = gr.Button("Stop", elem_classes=["stop-quiet"], scale=0, min_width=90)
            with gr.Row():
                regenerate_button = gr.Button("↻ Regenerate", size="sm")
                undo_button = gr.Button("↶ Undo (edit & resend)", size="sm")
                clear_button = gr.Button("🗑 Clear", size="sm")
                compare_button = gr.Button("⚖ Compare → Preferences", size="sm")
                export_button = gr.Button("⬇ Export JSON", size="sm")
                import_button = gr.UploadButton("⬆ Import JSON", file_types=[".json"], size="sm")
        with gr.Column(scale=2):
            with gr.Accordion("What the model actually receives", open=True):
                gr.Markdown(
                    "The conversation is turned into one string by the model's **chat template** "
                    "(`tokenizer.apply_chat_template`): role markers and special tokens included."
                )
                report = gr.Markdown()
                rendered = gr.Code(
                    label="Rendered prompt", language=None, lines=18, max_lines=18, interactive=False, wrap_lines=True
                )
            export_file = gr.File(label="Exported conversation (OpenAI-style messages)", interactive=False)
    kept = history.build("chat")
    save_capsule, load_capsule, capsule_file, capsule_note = capsule_files.build("chat-capsule")
    how_it_works("chat")

    busy = gr.State(False)  # per session: one reply streams into a conversation at a time
    made = gr.State(None)  # the last finished reply's replay capsule
    outputs = [chatbot, rendered, report, made]
    # Queued (a gr.Error raised with queue=False never reaches the page: an HTTP 500 and no
    # message), but never waiting behind model calls: no concurrency limit of their own.
    fast: dict[str, Any] = {"concurrency_limit": None, "api_visibility": "private", "show_progress": "hidden"}
    stream: dict[str, Any] = {"inputs_kwargs": sampling_kwargs, "api_visibility": "private", **MODEL_EVENTS}
    run_id = gr.State(None)  # the reply being written, so Stop can end it (controls.StopFlags)
    answer_inputs = [chatbot, system_prompt, shared.adapter, run_id]

    claimed = [busy, send_button, regenerate_button]
    sent = gr.on(
        [send_button.click, message.submit],
        take_message,
        [message, chatbot, busy],
        [message, chatbot, *claimed, run_id],
        **fast,
    )
    sending = sent.success(answer, answer_inputs, outputs, **stream)
    sending.failure(give_back, [chatbot, message], [chatbot, message], **fast)
    regen = gr.on([regenerate_button.click, chatbot.retry], claim, busy, [*claimed, run_id], **fast)
    regenerating = regen.success(answer, answer_inputs, outputs, **stream)
    edited = chatbot.edit(apply_edit, [chatbot, busy], [chatbot, *claimed, run_id], **fast)
    editing = edited.success(answer, answer_inputs, outputs, **stream)
    for running in (sending, regenerating, editing):
        # every way out of a reply frees the conversation: finished or stopped (the stream ends
        # itself, then .then), failed (.failure: the page runs no .then after an error), never
        # started (stop_reply); a closed page takes its state along
        history.remember(
            kept, running.then(release, None, claimed, **fast), keep_conversation, [chatbot, system_prompt]
        )
        running.failure(release, None, claimed, **fast)
    stop_button.click(stop_reply, run_id, claimed, **fast)

    fill_when_model_ready(demo, model_default_system, kept.stored, system_prompt)
    history.reopen(demo, kept, restore_conversation, [chatbot, system_prompt])
    save_capsule.click(
        lambda document: capsule_files.saved(document, "reply"), made, capsule_file, api_name="save_chat_capsule"
    )
    load_capsule.upload(
        load_capsule_file,
        load_capsule,
        [chatbot, system_prompt, *shared.sampling.inputs, shared.adapter, capsule_note],
        api_name="load_chat_capsule",
    )
    gr.on([undo_button.click, chatbot.undo], undo, [chatbot, busy], [chatbot, message], api_name="undo")
    clear_button.click(lambda: ([], "", ""), None, [chatbot, rendered, report], api_name="clear_chat")
    chatbot.clear(lambda: ("", ""), None, [rendered, report], api_visibility="private")
    export_button.click(export_conversation, [chatbot, system_prompt], export_file, api_name="export_chat")
    import_button.upload(import_conversation, import_button, [chatbot, system_prompt], api_name="import_chat")
    gr.api(chat_api, api_name="chat", **MODEL_EVENTS)
    chatbot.like(feedback, [chatbot, system_prompt, shared.annotator], None, api_visibility="private")
    compare_button.click(
        send_to_compare,
        [chatbot, system_prompt, shared.adapter, shared.annotator],
        None,
        inputs_kwargs=sampling_kwargs,
        api_name="chat_compare",
        **MODEL_EVENTS,
    )
    gr.on(
        [system_prompt.blur, message.blur, demo.load, shared.sampling.max_new_tokens.release],
        preview,
        [chatbot, message, system_prompt, shared.sampling.max_new_tokens],
        [rendered, report],
        api_name="chat_prompt",
        trigger_mode="always_last",
    )
