"""Who may do what: sign-in from PLAYGROUND_AUTH (or Hugging Face OAuth on a Space), admins from PLAYGROUND_ADMINS.

Once sign-in is on, visitors who are not signed in are read-only: they may generate, chat and ask
questions of existing collections, but not create, upload, index, queue or label anything others
see. PLAYGROUND_ANONYMOUS_LABELS opens labelling alone to them, for public label drives (a label
then records an anonymous session id). Starting training, deleting data and exporting need an
admin. With no sign-in and no admin list the app is a single-person tool on a laptop and everyone
may do everything -- that is the default because the app binds 127.0.0.1 unless configured otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import config
from pipelines.errors import PlaygroundError

log = logging.getLogger(__name__)


class AccessDenied(PlaygroundError, PermissionError):
    """The caller may not do this; the message says why and who may."""


class AuthConfigError(PlaygroundError, ValueError):
    """PLAYGROUND_AUTH / PLAYGROUND_ADMINS cannot be understood."""


class SignInRequired(AccessDenied):
    """The action needs a name behind it and the caller is not signed in."""


class SignInThrottled(PlaygroundError, PermissionError):
    """Too many failed sign-ins from this client; `seconds` until the next try."""

    def __init__(self, seconds: float) -> None:
        self.seconds = max(1, int(seconds + 0.999))
        super().__init__(f"Too many failed sign-ins: try again in {self.seconds} s.")


class LoginThrottle:
    """Failed sign-ins slow down the client that fails them, never the account holder elsewhere.

    A per-name lock would let anyone lock a person out by failing their name on purpose, and a
    per-address lock would lock out a whole classroom behind one NAT (or, behind a proxy, every
    visitor) after one person's mistakes. So the keys are:

    - a name *at an address*: `free_per_user` failures, then locked for base * 2^k seconds (at most
      `cap`), doubling with each further failure. Checked before the password is looked at, so a
      locked guesser learns nothing; the same name from any other address is not slowed.
    - an address: `free_per_address` failures (over all names), then locked the same way. While it
      is locked, a name that already failed `tries_while_address_locked` times from it is refused
      before its password is looked at (a third password sprayed over the same names gets nothing),
      but a name that has not -- a classmate behind the same NAT, or someone who mistyped once --
      is still checked: a correct password signs in.

    Only failures count; a success forgets its pair. A failure-free quarter of an hour forgets a
    key. Memory is bounded: the oldest keys are dropped beyond `max_keys`.
    """

    def __init__(
        self,
        *,
        free_per_user: int = 5,
        free_per_address: int = 20,
        tries_while_address_locked: int = 2,
        base: float = 1.0,
        cap: float = 900.0,
        forget_after: float = 900.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = {"pair": free_per_user, "addr": free_per_address}
        self.tries_while_address_locked = tries_while_address_locked
        self.base, self.cap, self.forget_after, self.max_keys, self.clock = base, cap, forget_after, max_keys, clock
        self._keys: OrderedDict[str, tuple[int, float, float]] = (
            OrderedDict()
        )  # key -> (failures, last failure, locked until)
        self._lock = threading.Lock()

    @staticmethod
    def _keys_for(user: str, address: str | None) -> dict[str, str]:
        return {"pair": f"pair:{user.strip().lower()}\n{address or ''}", "addr": f"addr:{address or ''}"}

    def _state(self, key: str, now: float) -> tuple[int, float, float]:
        failures, last, until = self._keys.get(key, (0, 0.0, 0.0))
        if failures and now - last > self.forget_after and now >= until:
            self._keys.pop(key, None)
            return 0, 0.0, 0.0
        return failures, last, until

    def wait_seconds(self, user: str, address: str | None) -> float:
        """How long this attempt must wait before its password may be looked at (0: now)."""
        now = self.clock()
        keys = self._keys_for(user, address)
        with self._lock:
            pair_failures, _, pair_until = self._state(keys["pair"], now)
            _, _, address_until = self._state(keys["addr"], now)
        waits = [pair_until - now, 0.0]
        if pair_failures >= self.tries_while_address_locked:  # this name failed here: the address's lock applies
            waits.append(address_until - now)
        return max(waits)

    def record(self, user: str, address: str | None, ok: bool) -> None:
        now = self.clock()
        keys = self._keys_for(user, address)
        with self._lock:
            if ok:  # successes are never counted against anyone
                self._keys.pop(keys["pair"], None)
                return
            for kind, key in keys.items():
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
            raise SignInRequired(
                f"Sign in to {action}. Visitors who are not signed in can generate, chat and ask questions; "
                "what others see needs a name behind it."
            )

    def check_labeller(self, user: str | None, action: str = "label", *, drive_item: bool = True) -> None:
        """Labelling: signed-in users; anonymous visitors too when the operator opened public label
        drives, and then only the drives' items -- creating items, prompt sets or chat-reply labels
        would put a visitor's own text in the store."""
        if not (self.anonymous_labels and drive_item):
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
        self, user: str, password: str, address: str | None = None, throttle: LoginThrottle | None = None
    ) -> bool:
        """A sign-in attempt against PLAYGROUND_AUTH, throttled per name at an address and per address.

        Raises SignInThrottled (before the password is compared) while this client may not try the name.
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
        users=parse_users(config.env("PLAYGROUND_AUTH")),
        admins=parse_admins(config.env("PLAYGROUND_ADMINS")),
        oauth=bool(os.environ.get("OAUTH_CLIENT_ID")),
        anonymous_labels=(config.env("PLAYGROUND_ANONYMOUS_LABELS") or "").strip().lower()
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
    """Forget the cached policy, the sign-in failures and the visitor key (tests change the environment between cases)."""
    global _policy, _throttle
    _policy = None
    _throttle = LoginThrottle()
    reset_visitor_keys()


# --- who an anonymous visitor is -----------------------------------------------------------------
#
# Nothing a client sends is an identity: Gradio's session hash is chosen by the client (and was
# published in the label tables), a typed name could be anyone's. An anonymous visitor is a random
# id the server mints and keeps in a signed, HttpOnly cookie (`playground.visitors` sets it and binds
# every session to it); handlers read it from a header the same middleware writes after removing
# any the client sent, signed again so that a request which did not pass through it is refused.
# What is stored is a keyed hash of that id, and what is shown is an alias derived from the stored
# one: neither can be sent back to act as the visitor.

VISITOR_COOKIE = "playground_visitor"
VISITOR_HEADER = "x-playground-visitor"
SECRET_BYTES = 32


class VisitorKeys:
    """The server's secret, and what it signs: visitor tokens, stored ids, address keys."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise AuthConfigError("PLAYGROUND_SECRET_KEY must be at least 16 characters")
        self._secret = secret

    def _mac(self, purpose: str, value: str, length: int = 32) -> str:
        return hmac.new(self._secret, f"{purpose}\n{value}".encode(), hashlib.sha256).hexdigest()[:length]

    def mint(self) -> tuple[str, str]:
        """A new visitor: (id, signed token for the cookie)."""
        visitor = secrets.token_urlsafe(18)
        return visitor, self.token(visitor)

    def token(self, visitor: str) -> str:
        return f"{visitor}.{self._mac('visitor', visitor)}"

    def verify(self, token: str | None) -> str | None:
        """The visitor id in a signed token, or None for a missing, malformed or forged one."""
        if not token or len(token) > 128 or "." not in token:
            return None
        visitor, _, signature = token.rpartition(".")
        return visitor if visitor and hmac.compare_digest(signature, self._mac("visitor", visitor)) else None

    def stored_id(self, visitor: str) -> str:
        """What a label records for an anonymous visitor: not the cookie, so not usable as one."""
        return f"anon:{self._mac('stored', visitor, 20)}"

    def address_key(self, address: str | None) -> str | None:
        """A client address as the database keeps it (caps per network need equality, not the address)."""
        return self._mac("address", address, 20) if address else None

    def derived(self, purpose: str) -> str:
        """A secret of its own for `purpose` (the browser storage's encryption), the same after a restart."""
        return self._mac("derived", purpose, 64)

    def signature(self, purpose: str, value: str) -> str:
        """What proves the server wrote `value` (work kept in a browser: the browser cannot forge it)."""
        return self._mac(f"signed:{purpose}", value, 64)

    def signed(self, purpose: str, value: str, signature: object) -> bool:
        return isinstance(signature, str) and hmac.compare_digest(signature, self.signature(purpose, value))

    def session_key(self, session_hash: str | None) -> str | None:
        return self._mac("session", session_hash, 20) if session_hash else None


def _load_secret() -> bytes:
    configured = config.env("PLAYGROUND_SECRET_KEY")
    if configured:
        return configured.encode()
    path = config.get_settings().path("secret.key")
    try:  # created once, owner-only; several processes may race to create it: the first one wins
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(SECRET_BYTES))
    for _ in range(50):  # a racing creator may not have written it yet
        data = path.read_bytes()
        if len(data) >= SECRET_BYTES:
            return data
        time.sleep(0.01)
    raise AuthConfigError(f"{path} holds no usable secret: delete it to make a new one")


_keys: VisitorKeys | None = None
_keys_lock = threading.Lock()


def visitor_keys() -> VisitorKeys:
    """PLAYGROUND_SECRET_KEY, else a random key kept in the data directory (mode 600)."""
    global _keys
    with _keys_lock:
        if _keys is None:
            _keys = VisitorKeys(_load_secret())
        return _keys


def reset_visitor_keys() -> None:
    global _keys
    with _keys_lock:
        _keys = None


def alias(annotator: str) -> str:
    """How an annotator is shown to others: names as they are, anonymous visitors as a short alias."""
    if not annotator.startswith("anon:"):
        return annotator
    return "visitor " + hashlib.sha256(annotator.encode()).hexdigest()[:6]


def is_anonymous(annotator: str | None) -> bool:
    return bool(annotator) and str(annotator).startswith("anon:")


def client_address(peer: str | None, forwarded_for: list[str], hops: int) -> str | None:
    """Who is on the other end: the connecting peer, or, behind `hops` trusted proxies, the address
    the outermost of them saw (X-Forwarded-For read from the right: what a client writes into the
    header itself lands on the left and is never taken)."""
    if hops <= 0:
        return peer
    chain = [part.strip() for header in forwarded_for for part in header.split(",") if part.strip()]
    if len(chain) < hops:  # it did not come through every proxy: nothing in the header can be trusted
        return peer
    return chain[-hops]
