"""How the UI refuses something a person did: a message on the page, one line in the server log.

Gradio prints a full traceback for every `gr.Error` unless told not to; for an empty prompt or a
name already taken that buries real failures in the log. Unexpected exceptions keep their
tracebacks (they are not UserErrors).
"""

from __future__ import annotations

import logging

import gradio as gr

log = logging.getLogger("playground")


class UserError(gr.Error):
    """A refusal the person can act on; shown as a toast, logged as one line."""

    def __init__(
        self, message: str = "That did not work.", *, title: str = "Error", duration: float | None = 10
    ) -> None:
        super().__init__(message, duration=duration, title=title, print_exception=False)
        first = str(message).strip().splitlines()[0][:300] if str(message).strip() else title
        log.info("refused (%s): %s", title, first)
