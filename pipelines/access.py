"""Who may do what: sign-in from PLAYGROUND_AUTH (or Hugging Face OAuth on a Space), admins from PLAYGROUND_ADMINS.

Labelling needs an identity once sign-in is on (a label must say who gave it); starting training,
deleting data and exporting need an admin. With no sign-in and no admin list the app is a
single-person tool on a laptop and everyone may do everything -- that is the default because
the app binds 127.0.0.1 unless configured otherwise.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


class AccessDenied(PermissionError):
    """The caller may not do this; the message says why and who may."""


class AuthConfigError(ValueError):
    """PLAYGROUND_AUTH / PLAYGROUND_ADMINS cannot be understood."""


def parse_users(value: str | None) -> dict[str, str]:
    """`user:password` pairs, comma-separated, or the path of a file with one pair per line.

    A file keeps passwords out of process listings and allows commas in passwords; blank lines
    and lines starting with # are skipped.
    """
    if not value:
        return {}
    path = Path(value).expanduser()
    if path.is_file():
        try:
            entries = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as error:
            raise AuthConfigError(f"PLAYGROUND_AUTH file {path} cannot be read: {error}") from error
        source = f"file {path}"
    else:
        entries = [part.strip() for part in value.split(",")]
        source = "PLAYGROUND_AUTH"
    users: dict[str, str] = {}
    for number, entry in enumerate(entries, 1):
        if not entry or entry.startswith("#"):
            continue
        user, sep, password = entry.partition(":")
        user = user.strip()
        if not sep or not user or not password:
            raise AuthConfigError(f"{source}, entry {number}: expected user:password")
        if user in users:
            raise AuthConfigError(f"{source}: user {user!r} is listed twice")
        users[user] = password
    return users


def parse_admins(value: str | None) -> frozenset[str]:
    return frozenset(name.strip() for name in (value or "").split(",") if name.strip())


@dataclass(frozen=True)
class AccessPolicy:
    users: dict[str, str] = field(default_factory=dict)  # PLAYGROUND_AUTH: Gradio's own login
    admins: frozenset[str] = frozenset()  # PLAYGROUND_ADMINS; empty: every signed-in user (or everyone)
    oauth: bool = False  # a Space with `hf_oauth: true`: people sign in with their Hugging Face account

    @property
    def sign_in(self) -> bool:
        return bool(self.users) or self.oauth

    def check_identity(self, user: str | None, action: str) -> None:
        """Anonymous callers may not act on shared data once sign-in is on."""
        if self.sign_in and not user:
            raise AccessDenied(f"Sign in to {action}: this app records who does it.")

    def is_admin(self, user: str | None) -> bool:
        if self.admins:
            return user in self.admins
        return bool(user) or not self.sign_in

    def check_admin(self, user: str | None, action: str) -> None:
        if self.is_admin(user):
            return
        if not user:
            raise AccessDenied(f"Sign in as an admin to {action}.")
        raise AccessDenied(f"Only admins may {action}; {user!r} is not one (PLAYGROUND_ADMINS lists who is).")

    def gradio_auth(self) -> list[tuple[str, str]] | None:
        return sorted(self.users.items()) or None


def policy_from_env() -> AccessPolicy:
    policy = AccessPolicy(
        users=parse_users(os.environ.get("PLAYGROUND_AUTH")),
        admins=parse_admins(os.environ.get("PLAYGROUND_ADMINS")),
        oauth=bool(os.environ.get("OAUTH_CLIENT_ID")),
    )
    if policy.sign_in and not policy.admins:
        log.warning("Sign-in is on but PLAYGROUND_ADMINS is empty: every signed-in user may train, delete and export.")
    unknown = policy.admins - set(policy.users) if policy.users and not policy.oauth else set()
    if unknown:
        log.warning("PLAYGROUND_ADMINS names users PLAYGROUND_AUTH does not define: %s", ", ".join(sorted(unknown)))
    return policy


_policy: AccessPolicy | None = None


def get_policy() -> AccessPolicy:
    global _policy
    if _policy is None:
        _policy = policy_from_env()
    return _policy


def reset_policy() -> None:
    """Forget the cached policy (tests change the environment between cases)."""
    global _policy
    _policy = None
