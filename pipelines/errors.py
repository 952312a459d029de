"""The playground's error family: every refusal a person or a script can act on.

`PlaygroundError` is the base; `InvalidParameter` names the parameter it refuses, so the CLI can
say which flag and the UI which control. Torch-free: storage and the CLI import it without
loading a model stack.
"""

from __future__ import annotations


class PlaygroundError(Exception):
    """Something the caller asked for cannot be done; the message says why (and `param` names the setting).

    `exit_code` is what the CLI exits with: 2 when the input was wrong (the default), 1 when a
    valid request could not be carried out (a model that cannot load, a command that failed).
    """

    param: str | None = None
    exit_code: int = 2


class InvalidParameter(PlaygroundError, ValueError):
    """A parameter is out of range; `param` names it so CLIs and UIs can point at it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


class ConfigError(PlaygroundError, ValueError):
    """The app's configuration (an environment variable) is wrong; the message names the variable."""
