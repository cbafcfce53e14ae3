"""Sealed values: AEAD encryption, purpose binding, expiry and key rotation."""

from __future__ import annotations

import base64
import json
import time

import pytest
import time_machine

from bffgate.sealing import Sealer

OLD = "old-secret-" + "o" * 32
NEW = "new-secret-" + "n" * 32


def test_sealed_value_round_trips_and_hides_its_content() -> None:
    """What is sealed opens again, and the plaintext appears nowhere in the sealed value."""
    sealer = Sealer([NEW], "access")
    sealed = sealer.seal({"at": "very-secret-token"}, time.time() + 60)
    assert sealer.unseal(sealed) == {"at": "very-secret-token"}
    assert "very-secret-token" not in sealed
    for part in sealed.split("."):
        padded = part + "=" * (-len(part) % 4)
        assert b"very-secret-token" not in base64.urlsafe_b64decode(padded)


def test_header_is_jwe_dir_a256gcm_with_key_id() -> None:
    """The protected header names JWE dir + A256GCM and the key that sealed it."""
    sealed = Sealer([NEW], "access").seal({}, time.time() + 60)
    header_part = sealed.split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(header_part + "=" * (-len(header_part) % 4)))
    assert header["alg"] == "dir"
    assert header["enc"] == "A256GCM"
    assert header["kid"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda v: v[:-1],
        lambda v: v[: len(v) // 2],
        lambda v: v.replace(".", "", 1),
        lambda v: v[:-6] + ("AAAAAA" if not v.endswith("AAAAAA") else "BBBBBB"),
        lambda v: "x" + v,
        lambda v: "",
        lambda v: "a.b.c.d.e",
        lambda v: "." * 4,
        lambda v: "é" * 100,
        lambda v: v * 400,
    ],
)
def test_damaged_values_do_not_open(damage: object) -> None:
    """Tampered, truncated or garbage values open to None instead of raising."""
    sealer = Sealer([NEW], "access")
    sealed = sealer.seal({"x": 1}, time.time() + 60)
    assert callable(damage)
    assert sealer.unseal(damage(sealed)) is None


def test_value_sealed_for_one_purpose_does_not_open_for_another() -> None:
    """An access cookie's value cannot be replayed as the user-data cookie, even with the same secret."""
    sealed = Sealer([NEW], "access").seal({"x": 1}, time.time() + 60)
    assert Sealer([NEW], "user").unseal(sealed) is None


def test_expired_value_does_not_open_even_from_the_cache() -> None:
    """A value stops opening at its expiry, also when it was opened (and cached) before."""
    sealer = Sealer([NEW], "access")
    sealed = sealer.seal({"x": 1}, time.time() + 30)
    assert sealer.unseal(sealed) == {"x": 1}
    with time_machine.travel(time.time() + 31, tick=False):
        assert sealer.unseal(sealed) is None


def test_key_rotation_new_key_seals_old_key_still_opens() -> None:
    """With secrets "NEW,OLD" values sealed under OLD open; once OLD is dropped they do not."""
    sealed_with_old = Sealer([OLD], "refresh").seal({"rt": 1}, time.time() + 60)
    rotated = Sealer([NEW, OLD], "refresh")
    assert rotated.unseal(sealed_with_old) == {"rt": 1}
    sealed_with_new = rotated.seal({"rt": 2}, time.time() + 60)
    assert Sealer([NEW], "refresh").unseal(sealed_with_new) == {"rt": 2}
    assert Sealer([NEW], "refresh").unseal(sealed_with_old) is None
    assert Sealer([OLD], "refresh").unseal(sealed_with_new) is None


def test_opening_a_value_of_an_older_secret_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Key rotation in use: one log event per older secret, none for the current one."""
    sealed_with_old = Sealer([OLD], "refresh").seal({"rt": 1}, time.time() + 60)
    another_with_old = Sealer([OLD], "refresh").seal({"rt": 3}, time.time() + 60)
    rotated = Sealer([NEW, OLD], "refresh")
    with caplog.at_level("INFO", logger="bffgate.sealing"):
        rotated.unseal(rotated.seal({"rt": 2}, time.time() + 60))
        assert [r for r in caplog.records if getattr(r, "fields", {}).get("event")] == []
        rotated.unseal(sealed_with_old)
        rotated.unseal(another_with_old)
    events = [r.fields for r in caplog.records if getattr(r, "fields", {}).get("event")]  # type: ignore[attr-defined]
    assert len(events) == 1
    assert events[0]["event"] == "key_rotation_in_use" and events[0]["purpose"] == "refresh"


def test_repr_hides_keys() -> None:
    """A sealer printed in a log or traceback shows no key material."""
    assert NEW not in repr(Sealer([NEW], "access"))
    assert "**********" in repr(Sealer([NEW], "access"))


def test_cache_is_bounded() -> None:
    """The decryption cache never grows past its bound, whatever values arrive."""
    sealer = Sealer([NEW], "access", cache_size=8)
    values = [sealer.seal({"i": i}, time.time() + 60) for i in range(20)]
    assert [sealer.unseal(v) for v in values] == [{"i": i} for i in range(20)]
    assert len(sealer._cache) == 8
