"""The config file's reader on its own: nested shapes, secret files, problems (no settings model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from bffgate.config_file import read_config_file
from bffgate.errors import ConfigError


class Client(BaseModel):
    client_id: str
    client_secret: str | None = None


class Holder(BaseModel):
    """Every shape a nested setting may take: one table, an optional one, an array, a table by name."""

    single: Client | None = None
    many: list[Client] = Field(default_factory=list)
    named: dict[str, Client] = Field(default_factory=dict)
    plain: str = ""


def read(tmp_path: Path, text: str, given: set[str] | None = None) -> tuple[dict[str, object], list[str]]:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    config = read_config_file(str(path), Holder.model_fields, given=given or set())
    return config.values, [line.removeprefix(f"{path}: ") for line in config.problems]


def test_every_nested_shape_is_checked_by_its_dotted_path(tmp_path: Path) -> None:
    """Unknown keys in a table, an array of tables and a table of tables are named where they are."""
    values, problems = read(
        tmp_path,
        '[single]\nclient_ix = "a"\n[[many]]\nclient_id = "b"\n[[many]]\nclient = "c"\n'
        '[named.billing]\nclient_id = "d"\ncolour = "e"\n',
    )
    assert problems == [
        "single.client_ix: unknown key; did you mean client_id?",
        "many[1].client: unknown key; did you mean client_id?",
        "named.billing.colour: unknown key; remove it (the README's configuration reference lists the keys)",
    ]
    assert values == {
        "single": {},
        "many": [{"client_id": "b"}, {}],
        "named": {"billing": {"client_id": "d"}},
    }


def test_nested_secret_files_are_read_relative_to_the_file(tmp_path: Path) -> None:
    """`client_secret_file` inside a table reads its file (relative to the config file's directory)."""
    (tmp_path / "billing").write_text("s3cret\n", encoding="utf-8")
    values, problems = read(tmp_path, '[[many]]\nclient_id = "b"\nclient_secret_file = "billing"\n')
    assert problems == []
    assert values == {"many": [{"client_id": "b", "client_secret": "s3cret"}]}


def test_a_top_level_secret_file_given_by_the_environment_is_not_opened(tmp_path: Path) -> None:
    """The environment wins, so a `name_file` key it overrides is never read (the path may not exist)."""
    values, problems = read(tmp_path, 'plain_file = "/nonexistent"\n', given={"plain"})
    assert (values, problems) == ({}, [])


def test_a_secret_file_key_must_be_a_path_and_its_file_not_empty(tmp_path: Path) -> None:
    """A number where a path belongs and an empty file are one line each."""
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    _, problems = read(tmp_path, 'plain_file = 3\n[single]\nclient_id = "x"\nclient_secret_file = "empty"\n')
    assert problems == [
        'plain_file: must be the path of the file holding plain, e.g. plain_file = "/run/secrets/plain"',
        f"single.client_secret_file: {tmp_path}/empty is empty; put the value of client_secret in it",
    ]


def test_an_empty_config_path_and_a_binary_file_are_refused(tmp_path: Path) -> None:
    """BFF_CONFIG= (empty) and bytes that are not UTF-8 stop start-up with one line."""
    with pytest.raises(ConfigError, match=r"^BFF_CONFIG: is empty; set it to the path"):
        read_config_file("", Holder.model_fields, given=set())
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError) as caught:
        read_config_file(str(binary), Holder.model_fields, given=set())
    assert str(caught.value) == f"{binary}: is not UTF-8 text; save the config file as UTF-8"


def test_a_key_set_twice_is_invalid_toml_with_a_hint(tmp_path: Path) -> None:
    """tomllib refuses a duplicate key; the line says so in words."""
    path = tmp_path / "twice.toml"
    path.write_text('plain = "a"\nplain = "b"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_config_file(str(path), Holder.model_fields, given=set())
    assert str(caught.value) == (
        f"{path}: line 2, column 12: invalid TOML (Cannot overwrite a value); fix the syntax there "
        "(a key is set twice in one table)"
    )
