"""Reading settings from the environment: each helper takes a variable's name and its embedded default, accepts a
`<NAME>_FILE` holding the value instead (secrets in containers), and adds what is wrong with a value to `problems`,
which settings.py refuses at start-up all at once, each with its name."""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import urlsplit

problems: list[str] = []


def _raw(name: str) -> str | None:
    """The variable's value, or the contents of the file named by `<NAME>_FILE`."""
    value = os.environ.get(name)
    file_name = os.environ.get(f"{name}_FILE")
    if value is None and file_name:
        try:
            value = Path(file_name).read_text().strip()
        except OSError as exc:
            problems.append(f"{name}_FILE: cannot read {file_name!r} ({exc.strerror})")
    if value is not None and value.strip() == "":
        return None
    return value


def env_str(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value is None else value.strip()


def env_bool(name: str, default: bool) -> bool:
    """Only `true` or `false` (any case): a typo such as `ture` must not silently mean false."""
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        problems.append(f"{name}: expected true or false, got {value!r}")
        return default
    return lowered == "true"


def env_number(name: str, default: float, *, kind: type = int, minimum: float = 0, strict_min: bool = False) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = kind(value.strip())
    except ValueError:
        problems.append(f"{name}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
        return default
    if not math.isfinite(number):
        # float() reads "nan" and "inf", which every comparison below lets through: a time limit of nan never stops.
        problems.append(f"{name}: expected a finite number, got {value!r}")
        return default
    if number < minimum or (strict_min and number == minimum):
        relation = "greater than" if strict_min else "at least"
        problems.append(f"{name}: must be {relation} {minimum}, got {value!r}")
        return default
    return number


def env_url(name: str, default: str | None, *, schemes: tuple[str, ...]) -> str | None:
    value = env_str(name, default)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        problems.append(f"{name}: scheme must be one of {', '.join(schemes)}, got {value!r}")
        return default
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        problems.append(
            f"{name}: the port must be a number from 0 to 65535 (in a user name or password, write : / ? # @ as "
            f"%3A %2F %3F %23 %40), got {value!r}"
        )
        return default
    if parts.scheme in ("http", "https") and not parts.hostname:
        problems.append(f"{name}: a URL such as https://example.org names its host, got {value!r}")
        return default
    return value
