"""Who may do what: sign-in from PLAYGROUND_AUTH (or Hugging Face OAuth on a Space), admins from PLAYGROUND_ADMINS.

Once sign-in is on, visitors who are not signed in are read-only: they may generate, chat and ask
questions of existing collections, but not create, upload, index, queue or label anything others
see. PLAYGROUND_ANONYMOUS_LABELS opens labelling alone to them, for public label drives (a label
then records an anonymous session id). Starting training, deleting data and exporting need an
admin. With no sign-in and no admin list the app is a single-person tool on a laptop and everyone
may do everything -- that is the default because the app binds 127.0.0.1 unless configured otherwise.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import PlaygroundError

log = logging.getLogger(__name__)


class AccessDenied(PlaygroundError, PermissionError):
    """The caller may not do this; the message says why and who may."""


class AuthConfigError(PlaygroundError, ValueError):
    """PLAYGROUND_AUTH / PLAYGROUND_ADMINS cannot be understood."""


class SignInThrottled(PlaygroundError, PermissionError):
    """Too many failed sign-ins for this name or from this address; `seconds` until the next try."""

    def __init__(self, seconds: float) -> None:
        self.seconds = max(1, int(seconds + 0.999))
        super().__init__(f"Too many failed sign-ins: try again in {self.seconds} s.")


class LoginThrottle:
    """Failed sign-ins slow down, per user name and per client address, doubling each time.

    A name gets `free_per_user` failures, an address (several people may share one behind a NAT)
    `free_per_address`; each failure beyond that locks the key for base * 2^k seconds, at most
    `cap`. A failure-free quarter of an hour forgets a key, and a successful sign-in forgets its
    name's failures. The check comes before the password is looked at, so a locked name learns
    nothing. Memory is bounded: the oldest keys are dropped beyond `max_keys`.
    """

    def __init__(
        self,
        *,
        free_per_user: int = 5,
        free_per_address: int = 20,
        base: float = 1.0,
        cap: float = 900.0,
        forget_after: float = 900.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = {"user": free_per_user, "addr": free_per_address}
        self.base, self.cap, self.forget_after, self.max_keys, self.clock = base, cap, forget_after, max_keys, clock
        self._keys: OrderedDict[str, tuple[int, float, float]] = (
            OrderedDict()
        )  # key -> (failures, last failure, locked until)
        self._lock = threading.Lock()

    @staticmethod
    def _keys_for(user: str, address: str | None) -> list[tuple[str, str]]:
        keys = [("user", f"user:{user.strip().lower()}")]
        if address:
            keys.append(("addr", f"addr:{address}"))
        return keys

    def _state(self, key: str, now: float) -> tuple[int, float, float]:
        failures, last, until = self._keys.get(key, (0, 0.0, 0.0))
        if failures and now - last > self.forget_after and now >= until:
            self._keys.pop(key, None)
            return 0, 0.0, 0.0
        return failures, last, until

    def wait_seconds(self, user: str, address: str | None) -> float:
        now = self.clock()
        with self._lock:
            return max([self._state(key, now)[2] - now for _, key in self._keys_for(user, address)] + [0.0])

    def record(self, user: str, address: str | None, ok: bool) -> None:
        now = self.clock()
        with self._lock:
            for kind, key in self._keys_for(user, address):
                if ok:
                    if kind == "user":
                        self._keys.pop(key, None)
                    continue
                failures, _, until = self._state(key, now)
                failures += 1
                over = failures - self.free[kind]
                if over > 0:
                    until = now + min(self.cap, self.base * 2 ** (over - 1))
                self._keys[key] = (failures, now, until)
                self._keys.move_to_end(key)
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)


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
    anonymous_labels: bool = False  # PLAYGROUND_ANONYMOUS_LABELS: visitors who are not signed in may label

    @property
    def sign_in(self) -> bool:
        return bool(self.users) or self.oauth

    def check_identity(self, user: str | None, action: str) -> None:
        """Anonymous callers may not change what others see once sign-in is on."""
        if self.sign_in and not user:
            raise AccessDenied(
                f"Sign in to {action}. Visitors who are not signed in can generate, chat and ask questions; "
                "what others see needs a name behind it."
            )

    def check_labeller(self, user: str | None, action: str = "label") -> None:
        """Labelling: signed-in users, or anyone when the operator opened a public label drive."""
        if not self.anonymous_labels:
            self.check_identity(user, action)

    def may_remove(self, user: str | None, owner: str | None) -> bool:
        """Admins may remove anything; a signed-in user what they added themselves."""
        return self.is_admin(user) or bool(user and owner and user == owner)

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

    def check_password(
        self, user: str, password: str, address: str | None = None, throttle: "LoginThrottle | None" = None
    ) -> bool:
        """A sign-in attempt against PLAYGROUND_AUTH, throttled per name and per address.

        Raises SignInThrottled (before the password is compared) while the name or address is locked.
        """
        throttle = throttle or login_throttle()
        wait = throttle.wait_seconds(user, address)
        if wait > 0:
            raise SignInThrottled(wait)
        expected = self.users.get(user)
        # compare even for unknown names, so timing does not tell which names exist
        ok = hmac.compare_digest(password.encode(), (expected or "\0" + password).encode()) and expected is not None
        throttle.record(user, address, ok)
        if not ok:
            log.warning("failed sign-in for %r from %s", user[:64], address or "an unknown address")
        return ok


def policy_from_env() -> AccessPolicy:
    policy = AccessPolicy(
        users=parse_users(os.environ.get("PLAYGROUND_AUTH")),
        admins=parse_admins(os.environ.get("PLAYGROUND_ADMINS")),
        oauth=bool(os.environ.get("OAUTH_CLIENT_ID")),
        anonymous_labels=(os.environ.get("PLAYGROUND_ANONYMOUS_LABELS") or "").strip().lower()
        in {"1", "true", "yes", "on"},
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


_throttle = LoginThrottle()


def login_throttle() -> LoginThrottle:
    return _throttle


def reset_policy() -> None:
    """Forget the cached policy and the sign-in failures (tests change the environment between cases)."""
    global _policy, _throttle
    _policy = None
    _throttle = LoginThrottle()
