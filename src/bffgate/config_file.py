"""The config file: one TOML file of settings, for what does not fit in environment variables.

``bffgate serve --config bffgate.toml`` (or ``BFF_CONFIG=bffgate.toml``) reads it. Its keys are the
settings' names in lower case, so ``remote_api = "…"`` in the file and ``REMOTE_API=…`` mean the same
thing; tables and arrays of tables fill nested settings (``[[routes]]``). The file sits below the
environment: keyword arguments > environment variables > ``NAME_FILE`` variables > the file > defaults.
A key ``name_file = "/run/secrets/x"`` in the file gives ``name`` that file's content (a path relative
to the config file's directory), at the file's own level: an environment variable still wins, and
then the secret file is not even opened.

The file is read and checked once, up front (``read_config_file``), so that its problems (an unknown
key with the nearest known one, a secret file that cannot be read) are reported together with the
settings' own validation errors, one line each, naming the file and the key. pydantic-settings' TOML
source (``ConfigFileSource``) then places the checked values between the environment and the defaults.

Not here: what a value must look like (``config.py`` validates values, whatever their source).
"""

from __future__ import annotations

import contextlib
import difflib
import re
import tomllib
import types
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, TomlConfigSettingsSource

from .errors import ConfigError
from .secret_files import read_secret

CONFIG_VARIABLE = "BFF_CONFIG"
FILE_KEY_SUFFIX = "_file"

# The error types of values of the wrong TOML type, and how to write the right one.
TYPE_FIXES = {
    "string_type": 'write it as a quoted string, e.g. {key} = "…"',
    "int_type": "write a whole number without quotes, e.g. {key} = {example}",
    "int_parsing": "write a whole number without quotes, e.g. {key} = {example}",
    "int_from_float": "write a whole number without quotes, e.g. {key} = {example}",
    "float_type": "write a number without quotes, e.g. {key} = {example}",
    "float_parsing": "write a number without quotes, e.g. {key} = {example}",
    "bool_type": "write true or false, without quotes",
    "bool_parsing": "write true or false, without quotes",
    "list_type": "write an array: {key} = [ … ], or [[{key}]] tables",
    "model_type": "write a table: [{key}] with its keys below it",
    "dict_type": "write a table: [{key}] with its keys below it",
}

# What usually causes tomllib's most common complaints.
TOML_HINTS = {
    "Invalid value": 'strings need quotes, e.g. remote_api = "https://api.example.com"',
    "Cannot overwrite a value": "a key is set twice in one table",
}


@dataclass(frozen=True)
class ConfigFile:
    """A read and checked config file: its values by setting name, and its problems, one line each."""

    path: str
    values: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    unread: set[str] = field(default_factory=set)  # settings whose ``name_file`` could not be read

    def line(self, key: str, message: str) -> str:
        """One problem line about ``key`` (a dotted path such as ``routes[1].prefix``) in this file."""
        return f"{self.path}: {key}: {message}"


def config_path(environ: Mapping[str, str]) -> str | None:
    """The config file named by ``BFF_CONFIG`` (``--config`` sets it), or None without one."""
    return next((value for key, value in environ.items() if key.upper() == CONFIG_VARIABLE), None)


def read_config_file(path: str, fields: Mapping[str, FieldInfo], *, given: Collection[str]) -> ConfigFile:
    """Parse and check the file against ``fields`` (every setting it may hold).

    ``given`` are the settings the environment or the caller sets: they win, so their ``name_file``
    keys are not read. A file that cannot be read or parsed raises ``ConfigError`` (one line: nothing
    else in it can be trusted); everything else is collected in ``ConfigFile.problems``.
    """
    if not path:
        raise ConfigError(
            f"{CONFIG_VARIABLE}: is empty; set it to the path of your TOML config file or unset it"
        )
    checker = _Checker(ConfigFile(path, {}), Path(path).parent, given)
    checker.config.values.update(checker.table(_parse(path), _by_name(fields), prefix=""))
    return checker.config


def _parse(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"{path}: cannot read the config file ({reason}); fix the path given to --config or {CONFIG_VARIABLE}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text; save the config file as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {_toml_problem(str(exc))}") from None


def _toml_problem(message: str) -> str:
    """tomllib's ``Invalid value (at line 3, column 14)`` as ``line 3, column 14: invalid TOML (…)``."""
    found = re.fullmatch(
        r"(?P<what>.*) \(at (?:line (?P<line>\d+), column (?P<column>\d+)|end of document)\)", message
    )
    if found is None:
        return f"invalid TOML ({message}); fix the file's syntax"
    where = f"line {found['line']}, column {found['column']}" if found["line"] else "end of the file"
    hint = TOML_HINTS.get(found["what"], "")
    return f"{where}: invalid TOML ({found['what']}); fix the syntax there" + (f" ({hint})" if hint else "")


@dataclass
class _Checker:
    """Walks the file's tables next to the models' fields, collecting problems and secret files."""

    config: ConfigFile
    directory: Path
    given: Collection[str]

    def table(self, table: Mapping[str, Any], fields: Mapping[str, FieldInfo], prefix: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key in fields:
                values[key] = self._nested(value, fields[key].annotation, prefix + key)
            elif key.endswith(FILE_KEY_SUFFIX) and key.removesuffix(FILE_KEY_SUFFIX) in fields:
                self._secret_file(key, value, table, values, prefix)
            else:
                self.config.problems.append(self.config.line(prefix + key, _unknown(key, fields)))
        return values

    def _secret_file(
        self, key: str, path: Any, table: Mapping[str, Any], values: dict[str, Any], prefix: str
    ) -> None:
        name = key.removesuffix(FILE_KEY_SUFFIX)
        if not prefix and name in self.given and name not in table:
            return  # the environment sets it, and wins: its file is not even opened
        try:
            values[name] = self._secret(name, path, table, prefix)
        except ValueError as exc:
            self.config.problems.append(self.config.line(prefix + key, str(exc)))
            self.config.unread.add(prefix + name)  # "is required" would only repeat this line

    def _secret(self, name: str, path: Any, table: Mapping[str, Any], prefix: str) -> str:
        """The content of ``name_file``'s file (relative to the config file); ``ValueError`` saying why not."""
        if name in table:
            raise ValueError(f"{prefix}{name} is set too; keep only one of them")
        if not isinstance(path, str):
            raise ValueError(
                f'must be the path of the file holding {name}, e.g. {name}{FILE_KEY_SUFFIX} = "/run/secrets/{name}"'
            )
        return read_secret(str(self.directory / Path(path).expanduser()) if path else "", name)

    def _nested(self, value: Any, annotation: Any, path: str) -> Any:
        """The value with its nested tables checked, when the field holds models (``list[Route]`` …)."""
        shape = _model_shape(annotation)
        if shape is None:
            return value
        kind, model = shape
        fields = _by_name(model.model_fields)
        if kind == "table" and isinstance(value, dict):
            return self.table(value, fields, path + ".")
        if kind == "array" and isinstance(value, list):
            return [
                self.table(item, fields, f"{path}[{index}].") if isinstance(item, dict) else item
                for index, item in enumerate(value)
            ]
        if kind == "mapping" and isinstance(value, dict):
            return {
                name: self.table(item, fields, f"{path}.{name}.") if isinstance(item, dict) else item
                for name, item in value.items()
            }
        return value  # the wrong shape: the settings' validation says so


def _unknown(key: str, fields: Mapping[str, FieldInfo]) -> str:
    close = difflib.get_close_matches(key.lower(), list(fields), n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {close[0]}?"
    return "unknown key; remove it (the README's configuration reference lists the keys)"


def setting_names(name: str, info: FieldInfo) -> set[str]:
    """The names a setting is known by: its field name and any alias (``routes``, ``bff_routes``)."""
    names = {name}
    for alias in (info.alias, info.validation_alias):
        if isinstance(alias, str):
            names.add(alias)
        elif isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
    return names


def _by_name(fields: Mapping[str, FieldInfo]) -> dict[str, FieldInfo]:
    return {alias: info for name, info in fields.items() for alias in setting_names(name, info)}


def _model_shape(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """How a field holds models: one (``table``), a list (``array``) or a dict by name (``mapping``)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table", annotation
    if origin is Annotated:
        return _model_shape(args[0])
    if origin in (Union, types.UnionType):
        return next((shape for arg in args if (shape := _model_shape(arg))), None)
    if origin in (list, tuple, set, frozenset, Sequence) and args:
        inner = _model_shape(args[0])
        return ("array", inner[1]) if inner and inner[0] == "table" else None
    if origin in (dict, Mapping) and len(args) == 2:
        inner = _model_shape(args[1])
        return ("mapping", inner[1]) if inner and inner[0] == "table" else None
    return None


def type_fix(error_type: str, key: str, info: FieldInfo | None) -> str | None:
    """How to write a value of the right TOML type for ``key``, or None when the type was not the problem."""
    fix = TYPE_FIXES.get(error_type)
    if fix is None:
        return None
    default = info.default if info is not None else None
    example = (
        str(default).lower() if isinstance(default, int | float) and not isinstance(default, bool) else "30"
    )
    return fix.format(key=key, example=example)


_in_use: ContextVar[ConfigFile | None] = ContextVar("bffgate_config_file", default=None)


@contextlib.contextmanager
def config_file_in_use(config: ConfigFile | None) -> Iterator[None]:
    """Settings built inside take their file values from ``config`` (``load_settings`` sets it)."""
    token = _in_use.set(config)
    try:
        yield
    finally:
        _in_use.reset(token)


class ConfigFileSource(TomlConfigSettingsSource):
    """pydantic-settings' TOML source with the file ``read_config_file`` already read and checked.

    Reading it here again would parse the file twice and lose the problem lines; the source's part is
    the precedence (below the environment) and the mapping of keys to fields.
    """

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        self._config = _in_use.get()
        super().__init__(settings_cls, toml_file=None)

    def _read_files(self, files: object, deep_merge: bool = False) -> dict[str, Any]:
        return dict(self._config.values) if self._config is not None else {}


class FileBackedSettings(BaseSettings):
    """Settings that also come from the config file, below the environment (see the module docstring)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            file_secret_settings,
            ConfigFileSource(settings_cls),
        )
