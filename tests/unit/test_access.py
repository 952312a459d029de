"""The access policy: parsing PLAYGROUND_AUTH / PLAYGROUND_ADMINS and who may do what."""

from __future__ import annotations

import pytest

from pipelines import access
from pipelines.access import AccessDenied, AccessPolicy, AuthConfigError
from tests.refusals import REFUSED


def test_users_from_the_variable_or_a_file(tmp_path):
    assert access.parse_users("alice:a1, bob:b:2") == {"alice": "a1", "bob": "b:2"}
    file = tmp_path / "users.txt"
    file.write_text("# team\nalice:p,w\n\nbob:x\n")
    assert access.parse_users(str(file)) == {"alice": "p,w", "bob": "x"}
    assert access.parse_users("") == {}


@pytest.mark.parametrize("bad", ["alice", "alice:", ":pw", "alice:1,alice:2"])
def test_malformed_users_are_refused(bad):
    with pytest.raises(AuthConfigError):
        access.parse_users(bad)


def test_laptop_default_lets_everyone_do_everything():
    policy = AccessPolicy()
    assert not policy.sign_in and policy.is_admin(None) and policy.is_admin("anyone")
    policy.check_identity(None, "label")


def test_sign_in_requires_an_identity_and_admins_are_listed():
    policy = AccessPolicy(users={"alice": "a", "bob": "b"}, admins=frozenset({"alice"}))
    with pytest.raises(AccessDenied, match="Sign in to label"):
        policy.check_identity(None, "label")
    policy.check_identity("bob", "label")
    policy.check_admin("alice", "start training")
    with pytest.raises(AccessDenied, match="Only admins may start training; 'bob'"):
        policy.check_admin("bob", "start training")
    with pytest.raises(AccessDenied, match="Sign in as an admin"):
        policy.check_admin(None, "export")


def test_oauth_without_admin_list_admits_signed_in_users_only():
    policy = AccessPolicy(oauth=True)
    assert policy.is_admin("someone") and not policy.is_admin(None)


def test_policy_from_environment(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_AUTH", "alice:a")
    monkeypatch.setenv("PLAYGROUND_ADMINS", "alice, carol")
    access.reset_policy()
    policy = access.get_policy()
    assert policy.gradio_auth() == [("alice", "a")] and policy.admins == {"alice", "carol"}


def test_guarded_handlers_refuse_in_process(monkeypatch):
    """The decorator itself, without a server: a handler called with no signed-in user is refused."""

    from pipelines.rag import store
    from playground import dataset, rag
    from playground import label as tab

    monkeypatch.setenv("PLAYGROUND_AUTH", "alice:a")
    monkeypatch.setenv("PLAYGROUND_ADMINS", "alice")
    access.reset_policy()
    with pytest.raises(REFUSED, match="Sign in as an admin to delete data"):
        dataset.delete_item("whatever", request=None)
    with pytest.raises(REFUSED, match="Sign in to label"):
        tab.vote_api("whatever", "A", "typed-name", request=None)
    store.create("keep")
    with pytest.raises(REFUSED, match="Sign in as an admin to delete data"):
        rag.delete_collection("keep", request=None)
    assert "keep" in [c["name"] for c in store.list_collections()]


def test_login_throttle_doubles_per_name_at_an_address_and_forgets():
    from pipelines.access import LoginThrottle

    now = [0.0]
    throttle = LoginThrottle(
        free_per_user=2, free_per_address=4, base=1.0, cap=8.0, forget_after=100.0, clock=lambda: now[0]
    )
    for _ in range(2):
        throttle.record("Alice", "10.0.0.1", ok=False)
    assert throttle.wait_seconds("alice", "10.0.0.1") == 0  # two free failures; names are case-insensitive
    waits = []
    for _ in range(5):
        throttle.record("alice", "10.0.0.1", ok=False)
        waits.append(throttle.wait_seconds("alice", "10.0.0.1"))
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped
    # the same name from anywhere else is not slowed: failing someone's name never locks them out
    assert throttle.wait_seconds("alice", "10.0.0.9") == 0
    # the first address has failed 7 times (> 4): names that failed there twice wait, the others are checked
    assert throttle.wait_seconds("alice", "10.0.0.1") > 0
    assert throttle.wait_seconds("bob", "10.0.0.1") == 0
    throttle.record("carol", "10.0.0.1", ok=False)
    assert throttle.wait_seconds("carol", "10.0.0.1") == 0  # one mistake: carol may try again
    throttle.record("carol", "10.0.0.1", ok=False)
    assert throttle.wait_seconds("carol", "10.0.0.1") > 0  # a third guess at carol from there waits
    now[0] += 9
    throttle.record("alice", "10.0.0.1", ok=True)  # a success forgets the name's failures there
    throttle.record("alice", "10.0.0.1", ok=True)
    assert throttle._keys.get("addr:10.0.0.1")[0] == 9  # ... and is never counted against the address
    now[0] += 200
    assert throttle.wait_seconds("carol", "10.0.0.1") == 0  # quiet for long enough: forgotten


def test_spraying_two_hundred_names_from_one_address_never_locks_out_a_correct_password():
    """Issue 35, M5: after 200 sprayed names a correct password from the same (NAT) address was refused for 15 min."""
    from pipelines.access import AccessPolicy, LoginThrottle, SignInThrottled

    policy = AccessPolicy(users={"alice": "right", "bob": "also-right"})
    throttle = LoginThrottle(base=60.0)
    for i in range(200):
        try:
            assert not policy.check_password(f"user{i}", "Summer2026!", "203.0.113.7", throttle)
        except SignInThrottled:
            pass
    assert policy.check_password("bob", "also-right", "203.0.113.7", throttle)  # a classmate behind the same NAT
    assert not policy.check_password("alice", "typo", "203.0.113.7", throttle)  # alice mistypes once ...
    assert policy.check_password("alice", "right", "203.0.113.7", throttle)  # ... and then gets in
    assert not policy.check_password("user4", "Winter2026!", "203.0.113.7", throttle)  # a second spray: checked
    with pytest.raises(SignInThrottled):
        policy.check_password("user4", "Spring2026!", "203.0.113.7", throttle)
    assert policy.check_password("alice", "right", "198.51.100.2", throttle)  # from anywhere else: in at once


def test_login_throttle_is_checked_before_the_password_and_bounded():
    from pipelines.access import AccessPolicy, LoginThrottle, SignInThrottled

    policy = AccessPolicy(users={"alice": "pw"})
    throttle = LoginThrottle(free_per_user=1, base=60.0, max_keys=50)
    assert policy.check_password("alice", "pw", "1.2.3.4", throttle)
    assert not policy.check_password("alice", "no", "1.2.3.4", throttle)
    assert not policy.check_password("alice", "no", "1.2.3.4", throttle)
    with pytest.raises(SignInThrottled, match="try again in 60 s"):
        policy.check_password("alice", "pw", "1.2.3.4", throttle)  # locked: even the right password waits
    for i in range(500):
        throttle.record(f"name{i}", f"10.0.{i // 250}.{i % 250}", ok=False)
    assert len(throttle._keys) <= 50
