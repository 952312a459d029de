"""What a handler's refusal may be when a test calls it directly, outside the app.

In the app every handler is wrapped by `playground.errors.translate_errors`, which turns the error
family into page messages; called as plain Python, a handler refuses with either.
"""

from __future__ import annotations

import gradio as gr

from pipelines.errors import PlaygroundError

REFUSED = (gr.Error, PlaygroundError)
