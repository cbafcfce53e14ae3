"""``session.py``'s codec: the one place the session's short keys are written, split and joined."""

from __future__ import annotations

from dataclasses import replace

from bffgate.session import ACCESS_KEYS, API_KEYS, DURABLE_KEYS, USER_KEYS, Session
from bffgate.tokens import TokenSet


def full_session() -> Session:
    tokens = TokenSet(access_token="at", refresh_token="rt", id_token="it", expires_in=300)
    session = Session.start(tokens, {"sub": "u1", "name": "Ada"})
    session = session.with_api_token("https://billing.test#", TokenSet("billing-at", expires_in=60))
    return replace(session, identity={"iss": "https://idp.test", "sub": "u1", "sid": "op-1"})


PARTS = (DURABLE_KEYS, ACCESS_KEYS, USER_KEYS, API_KEYS)


def test_the_cookie_parts_cover_every_key_of_the_codec() -> None:
    assert {key for keys in PARTS for key in keys} == set(full_session().to_dict())


def test_the_cookie_parts_join_back_to_the_same_session() -> None:
    session = full_session()
    parts = [session.part(keys) for keys in PARTS]
    assert Session.from_dict({key: value for part in parts for key, value in part.items()}) == session


def test_a_part_leaves_out_what_the_session_does_not_have() -> None:
    session = replace(full_session(), id_token=None, identity=None)
    assert set(session.part(DURABLE_KEYS)) == {"sid", "c", "rt", "u"}


def test_a_per_api_token_changes_only_that_api_and_the_refresh_token() -> None:
    """A grant for one API replaces that API's token and the rotated refresh token, nothing else."""
    session = full_session()
    later = session.with_api_token("https://orders.test#", TokenSet("orders-at", 60, refresh_token="rt2"))
    assert later.access_token == session.access_token
    assert later.id_token == session.id_token
    assert later.refresh_token == "rt2"
    assert later.api_tokens["https://billing.test#"] == session.api_tokens["https://billing.test#"]
    assert later.api_tokens["https://orders.test#"].access_token == "orders-at"
    assert "orders-at" not in repr(later) and "billing-at" not in repr(later)


def test_malformed_data_is_no_session() -> None:
    assert Session.from_dict({"sid": "x"}) is None
    assert Session.from_dict("not a dict") is None
    assert Session.from_dict({**full_session().to_dict(), "apis": {"x": ["only one"]}}) is None
