"""Reading settings from the environment, in one place, validated at start-up.

One shape for every process: its settings are a frozen dataclass, described by a
`read_*(reader) -> Settings` function (parts such as Kafka's or the metrics' are
read the same way and nested), and built by `load(read, env)`, the only code that
turns the process environment into settings. Every problem is collected so a
misconfigured process names *all* the variables that are wrong in one message
instead of failing one variable per restart. Tests pass a mapping as `env`.
"""

from __future__ import annotations

import builtins
import dataclasses
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar, NoReturn, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

T = TypeVar("T")
S = TypeVar("S")

_REQUIRED = object()


# What every secret of .env.example starts with (and a DATABASE_URL built from one holds).
PLACEHOLDER = "change-me"


class ConfigError(Exception):
    """One or more settings are missing or invalid."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class EnvReader:
    """Typed access to a mapping of settings, remembering every problem found.

    Its readers are named after the types they return; annotations inside the
    class therefore say `builtins.str` and so on.
    """

    # Every variable name any reader in this process has asked for: the registry the
    # compose test checks docker-compose.yml's environment against (tests/test_compose.py).
    names_read: ClassVar[builtins.set[builtins.str]] = set()

    def __init__(self, env: Mapping[str, str] | None = None):
        self.env = os.environ if env is None else env
        self.problems: builtins.list[str] = []

    def _get(
        self,
        name: builtins.str,
        default: object,
        parse: Callable[[builtins.str], T],
        hint: builtins.str,
    ) -> T:
        EnvReader.names_read.add(name)
        raw = self.env.get(name)
        if raw is None or raw == "":
            if default is _REQUIRED:
                self.problems.append(f"{name} is required ({hint})")
                return None  # type: ignore[return-value]
            return default  # type: ignore[return-value]
        if PLACEHOLDER in raw:
            # .env.example's secrets are public: a deployment that kept one must not start.
            self.problems.append(
                f"{name} still holds the placeholder of .env.example: replace it with a "
                "secret of its own (e.g. `openssl rand -hex 32`)"
            )
            return default if default is not _REQUIRED else None  # type: ignore[return-value]
        try:
            return parse(raw)
        except ValueError as exc:
            self.problems.append(f"{name}={raw!r} is invalid: {exc} ({hint})")
            return default if default is not _REQUIRED else None  # type: ignore[return-value]

    def str(
        self, name: builtins.str, default: object = _REQUIRED, hint: builtins.str = "text"
    ) -> builtins.str:
        return self._get(name, default, lambda s: s, hint)

    def int(
        self,
        name: builtins.str,
        default: object = _REQUIRED,
        minimum: builtins.int | None = None,
        hint: builtins.str = "",
        maximum: builtins.int | None = None,
    ) -> builtins.int:
        def parse(raw: builtins.str) -> builtins.int:
            value = int(raw)
            if minimum is not None and value < minimum:
                raise ValueError(f"must be at least {minimum}")
            if maximum is not None and value > maximum:
                raise ValueError(f"must be at most {maximum}")
            return value

        return self._get(name, default, parse, hint or "a whole number")

    def float(
        self,
        name: builtins.str,
        default: object = _REQUIRED,
        minimum: builtins.float | None = None,
        maximum: builtins.float | None = None,
        hint: builtins.str = "",
    ) -> builtins.float:
        def parse(raw: builtins.str) -> builtins.float:
            value = float(raw)
            if minimum is not None and value < minimum:
                raise ValueError(f"must be at least {minimum}")
            if maximum is not None and value > maximum:
                raise ValueError(f"must be at most {maximum}")
            return value

        return self._get(name, default, parse, hint or "a number")

    def bool(self, name: builtins.str, default: object = _REQUIRED) -> builtins.bool:
        def parse(raw: builtins.str) -> builtins.bool:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError("must be true or false")

        return self._get(name, default, parse, "true or false")

    def list(
        self,
        name: builtins.str,
        default: object = _REQUIRED,
        hint: builtins.str = "comma-separated",
    ) -> builtins.list:
        return self._get(
            name, default, lambda s: [p.strip() for p in s.split(",") if p.strip()], hint
        )

    def choice(
        self, name: builtins.str, allowed: tuple[builtins.str, ...], default: object = _REQUIRED
    ) -> builtins.str:
        """One of a few names, compared without regard to case (given back as listed)."""

        def parse(raw: builtins.str) -> builtins.str:
            for option in allowed:
                if raw.strip().upper() == option.upper():
                    return option
            raise ValueError(f"must be one of {', '.join(allowed)}")

        return self._get(name, default, parse, " / ".join(allowed))

    def readable_file(
        self, name: builtins.str, default: object = _REQUIRED, hint: builtins.str = "a file path"
    ) -> builtins.str:
        def parse(raw: builtins.str) -> builtins.str:
            if not os.access(raw, os.R_OK):
                raise ValueError("no readable file there")
            return raw

        return self._get(name, default, parse, hint)

    def zone(self, name: builtins.str, default: builtins.str) -> ZoneInfo:
        """An IANA time zone such as Asia/Tokyo."""

        def parse(raw: builtins.str) -> ZoneInfo:
            try:
                return ZoneInfo(raw)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError("not a known IANA time zone") from None

        return self._get(name, ZoneInfo(default), parse, "e.g. Asia/Tokyo")

    def check(self) -> None:
        """Raise ConfigError if anything read so far was missing or invalid."""
        if self.problems:
            raise ConfigError(self.problems)


def load(read: Callable[[EnvReader], T], env: Mapping[str, str] | None = None) -> T:
    """The settings `read` describes, from `env` (the process environment if None).

    Raises ConfigError naming every missing or invalid variable at once.
    """
    reader = EnvReader(env)
    settings = read(reader)
    reader.check()
    return settings


def load_or_exit(read: Callable[[EnvReader], T], env: Mapping[str, str] | None = None) -> T:
    """`load` for a command's main: a bad setting stops it with the message, exit code 2."""
    try:
        return load(read, env)
    except ConfigError as exc:
        exit_on_config_error(exc)


def extend(base: object, settings_class: type[S], **extra: object) -> S:
    """`settings_class` (a dataclass extending `base`'s) from `base`'s values and `extra`.

    For a process whose settings are a service's shared ones plus what only it needs
    (the consumer's Kafka, the web app's secrets): one reading of the shared part.
    """
    shared = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}  # type: ignore[arg-type]
    return settings_class(**shared, **extra)


def schemas_dir() -> Path:
    """The event schemas and topics.yaml: KOE_SCHEMAS_DIR (the image sets it), else the
    copy packaged with koe_kit. Read when first needed, never at import."""
    override = os.environ.get("KOE_SCHEMAS_DIR")
    return Path(override) if override else Path(__file__).resolve().parent / "schemas"


def exit_on_config_error(exc: ConfigError) -> NoReturn:
    """Stop a process that cannot start, saying what to fix."""
    print(f"koe: cannot start, {exc}", file=sys.stderr)
    print(
        "Set the variables above in the environment (see README.md, Configuration).",
        file=sys.stderr,
    )
    raise SystemExit(2)
