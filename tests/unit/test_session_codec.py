"""``session.py``'s codec: the one place the session's short keys are written, split and joined."""

from __future__ import annotations

from dataclasses import replace

from bffgate.session import ACCESS_KEYS, DURABLE_KEYS, USER_KEYS, Session
from bffgate.tokens import TokenSet


def full_session() -> Session:
    tokens = TokenSet(access_token="at", refresh_token="rt", id_token="it", expires_in=300)
    session = Session.start(tokens, {"sub": "u1", "name": "Ada"})
    return replace(session, identity={"iss": "https://idp.test", "sub": "u1", "sid": "op-1"})


def test_the_cookie_parts_cover_every_key_of_the_codec() -> None:
    assert set(DURABLE_KEYS) | set(ACCESS_KEYS) | set(USER_KEYS) == set(full_session().to_dict())


def test_the_cookie_parts_join_back_to_the_same_session() -> None:
    session = full_session()
    parts = [session.part(keys) for keys in (DURABLE_KEYS, ACCESS_KEYS, USER_KEYS)]
    assert Session.from_dict({key: value for part in parts for key, value in part.items()}) == session


def test_a_part_leaves_out_what_the_session_does_not_have() -> None:
    session = replace(full_session(), id_token=None, identity=None)
    assert set(session.part(DURABLE_KEYS)) == {"sid", "c", "rt", "u"}


def test_malformed_data_is_no_session() -> None:
    assert Session.from_dict({"sid": "x"}) is None
    assert Session.from_dict("not a dict") is None
