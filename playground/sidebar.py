"""The sidebar every tab shares: which model is loaded, which adapter is on, the sampling panel."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from typing import Any

import gradio as gr

from pipelines.access import VISITOR_HEADER, get_policy, visitor_keys
from pipelines.engine import adapters, models
from pipelines.engine.models import ModelHandle

from . import presets
from .controls import SamplingControls, engine_knob_updates, fill_when_model_ready, sampling_controls
from .errors import UserError
from .pickers import LiveDropdown


@dataclass
class Shared:
    """Components that several tabs read."""

    sampling: SamplingControls
    adapter: gr.Dropdown
    annotator: gr.Textbox
    # the workshop this browser joined (playground/workshop.py); here because the sidebar is always on
    # the page: state inside a tab not yet shown is not read from the browser before the page's load events
    membership: gr.BrowserState


def model_card(handle: ModelHandle) -> str:
    local = (
        f"**{handle.name}** · {handle.parameter_count / 1e6:.0f}M parameters · context {handle.local_context_window:,} tokens  \n"
        f"{handle.plan.device} · {handle.plan.dtype_name} · {handle.plan.threads} threads  \n"
        f"<span class='muted'>{handle.plan.reason}</span>"
    )
    server = handle.remote_server
    if server is None:
        return local
    return (
        f"**Engine: openai** · {html.escape(server.describe())}  \n"
        "<span class='muted'>Generate, Chat, comparisons, RAG, Reasoning and base-model answers come from the "
        "server. Adapters, training, the reward model and the Inside tab run on the local model:</span>  \n" + local
    )


def loading_card(name: str) -> str:
    return f"**{name}** · loading the weights…  \n<span class='muted'>the model's tabs answer once it is in</span>"


def model_ready() -> list[Any]:
    """The model card, and the sampling knobs a remote server cannot honour disabled with the reason."""
    handle = models.get_handle()
    return [model_card(handle), *engine_knob_updates(handle)]


def adapter_choices() -> list[tuple[str, str]]:
    return [(adapters.BASE_CHOICE, adapters.BASE_CHOICE)] + adapters.choices()


def refresh_adapters(current: str | None) -> dict:
    choices = adapter_choices()
    values = {value for _, value in choices}
    return gr.update(choices=choices, value=current if current in values else adapters.BASE_CHOICE)


def selected_adapter(value: str | None) -> str | None:
    """The adapter name a handler should use (None = the bare base model)."""
    return None if value in (None, "", adapters.BASE_CHOICE) else value


def signed_in_user(request: gr.Request | None) -> str | None:
    """The signed-in user: Gradio auth (PLAYGROUND_AUTH) or a Hugging Face OAuth login on Spaces."""
    if request is None:
        return None
    user = getattr(request, "username", None)
    if user:
        return str(user)
    try:  # HF OAuth keeps the profile in the session, not in request.username
        info = request.session.get("oauth_info") or {}
        return info.get("userinfo", {}).get("preferred_username") or None
    except (AttributeError, AssertionError, KeyError, TypeError):
        return None


def identity(request: gr.Request | None) -> dict:
    """When signed in, the login name is the annotator (and cannot be edited); else a free field."""
    user = signed_in_user(request)
    if user:
        return gr.update(value=user, interactive=False, info="signed in")
    return gr.update()


def annotator_name(typed: str | None, request: gr.Request | None) -> str:
    """Who is acting: the signed-in user if any, else what they typed (only while sign-in is off).

    With sign-in on, a typed name is ignored: anyone could type anyone's name.
    """
    user = signed_in_user(request)
    if user:
        return user.strip()
    return "" if get_policy().sign_in else (typed or "").strip()


def visitor(request: gr.Request | None) -> str | None:
    """The anonymous visitor behind a request: the id the visitors middleware vouched for (signed), or None."""
    headers = getattr(request, "headers", None) or {}
    return visitor_keys().verify(headers.get(VISITOR_HEADER))


def visitor_key(request: gr.Request | None) -> str | None:
    """The visitor as the database keeps it (a keyed hash, not the cookie: not usable as one), or None."""
    who = visitor(request)
    return visitor_keys().stored_id(who) if who else None


def client_key(request: gr.Request | None) -> str | None:
    """The request's client address as the database keeps it (a keyed hash; caps per network compare them)."""
    client = getattr(request, "client", None)
    return visitor_keys().address_key(getattr(client, "host", None))


def session_key(request: gr.Request | None) -> str | None:
    return visitor_keys().session_key(getattr(request, "session_hash", None))


def known_labeller(typed: str | None, request: gr.Request | None, *, drive_item: bool = True) -> str | None:
    """The identity a label would be stored under, or None when there is none yet.

    In a public label drive (PLAYGROUND_ANONYMOUS_LABELS with sign-in on) a visitor who is not
    signed in labels the drive's items as `anon:<keyed hash of their visitor id>`: a typed name
    could be anyone's, and Gradio's session hash is the client's own choice.
    """
    policy, user = get_policy(), signed_in_user(request)
    if policy.sign_in and not user:
        if not (policy.anonymous_labels and drive_item):
            return None
        return visitor_key(request)
    return annotator_name(typed, request) or None


def labeller(typed: str | None, request: gr.Request | None, action: str = "label", *, drive_item: bool = True) -> str:
    """The identity a label is stored under (`known_labeller`); a clear refusal when there is none."""
    policy, user = get_policy(), signed_in_user(request)
    policy.check_labeller(user, action, drive_item=drive_item)  # SignInRequired: "Sign in to label. ..."
    who = known_labeller(typed, request, drive_item=drive_item)
    if who:
        return who
    if policy.sign_in and not user:
        raise UserError("Labelling without signing in needs a browser session: reload the page.", title="Sign in")
    raise UserError("Enter your name in the sidebar first: every label records who gave it.")


def build(demo: gr.Blocks, model_name: str) -> Shared:
    with gr.Sidebar(label="Model & sampling", open=True, width=330):
        card = gr.Markdown(loading_card(model_name), elem_id="model-card")
        if os.environ.get("OAUTH_CLIENT_ID"):  # a Space with `hf_oauth: true` in its README
            gr.LoginButton()
        annotator = gr.Textbox(label="Your name", placeholder="used for your preference labels", max_length=128)
        with gr.Row():
            adapter = LiveDropdown(
                adapter_choices,
                fallback=adapters.BASE_CHOICE,
                label="Adapter",
                elem_id="sidebar-adapter",
                info="base model, or a LoRA / aligned adapter trained in this app (switching never reloads the base)",
                scale=4,
            )
            refresh = gr.Button("↻", scale=0, min_width=36, size="sm")  # the picker keeps the width (names were cut)
        with gr.Accordion("Sampling (shared by every tab)", open=True):
            sampling = sampling_controls()
            presets.build(demo, sampling)
    refresh.click(refresh_adapters, adapter, adapter, api_name="list_adapters")
    demo.load(identity, None, annotator, api_visibility="private")
    fill_when_model_ready(demo, model_ready, None, [card, *sampling.engine_knobs])
    membership = gr.BrowserState(
        None, storage_key="llm-playground-workshop", secret=visitor_keys().derived("browser-state")
    )
    return Shared(sampling=sampling, adapter=adapter, annotator=annotator, membership=membership)
