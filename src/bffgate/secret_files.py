"""Settings read from files: the ``*_FILE`` convention of container images.

``ETLS_ACCESS_FILE=/run/secrets/etls_access`` gives ``ETLS_ACCESS`` the content of that file, the way
Docker, Compose and Kubernetes mount secrets; it works for every setting (``ETLS_REFRESH_FILE``,
``OIDC_CLIENT_SECRET_FILE``, ``REDIS_URL_FILE``, …), so a secret never has to sit in the process
environment or in a manifest. Trailing line breaks are dropped (``echo`` and ``kubectl create secret
--from-file`` leave one); everything else in the file is the value. The config file's ``name_file``
keys read their files with ``read_secret`` too (``config_file.py``).

Not here: validating the values (``config.py`` does that, whatever their source).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from .errors import ConfigError

FILE_SUFFIX = "_FILE"


def values_from_files(
    names: Iterable[str], environ: Mapping[str, str], *, given: Collection[str] = ()
) -> dict[str, str]:
    """For each setting in ``names`` with a ``NAME_FILE`` variable, the file's content by setting name.

    ``given`` are settings passed explicitly (they win, and their files are not read). Every problem
    is collected and raised as one ``ConfigError``, a line per variable.
    """
    upper_environ = {key.upper(): value for key, value in environ.items()}  # settings ignore case
    values: dict[str, str] = {}
    problems: list[str] = []
    for name in names:
        variable = name.upper()
        path = upper_environ.get(variable + FILE_SUFFIX)
        if path is None or name in given:
            continue
        if variable in upper_environ:
            problems.append(
                f"{variable}: both {variable} and {variable}{FILE_SUFFIX} are set; keep only one of them"
            )
            continue
        try:
            values[name] = read_secret(path, variable)
        except ValueError as exc:
            problems.append(f"{variable}{FILE_SUFFIX}: {exc}")
    if problems:
        raise ConfigError("\n".join(problems))
    return values


def read_secret(path: str, setting: str) -> str:
    """The file's text without trailing line breaks; ``ValueError`` saying what is wrong with it.

    The message does not say where ``path`` came from (a variable, a config file key): callers prefix it.
    """
    if not path:
        raise ValueError(f"is empty; set it to the path of the file holding {setting}")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(f"cannot read {path} ({reason}); mount the file there or fix the path") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    value = text.rstrip("\r\n")
    if not value:
        raise ValueError(f"{path} is empty; put the value of {setting} in it")
    return value
