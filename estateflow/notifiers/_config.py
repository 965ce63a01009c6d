"""``estateflow.yaml`` → validated channel configuration, with FILE:LINE:COLUMN problems.

Why ``${VAR}`` is substituted *after* parsing, in string values only: secrets come from the
environment (never committed), and substituting into the text first would let a value
containing ``:`` or a newline change the YAML structure, and would shift every line/column in
error messages. ``${VAR:-default}`` uses the default when VAR is unset or empty (shell rules);
``$${`` writes a literal ``${``.

Every problem of the file is collected and reported at once (DESIGN principle 6): a broken
``${VAR}``, an unknown kind and a misspelt option on three channels give one error with three
lines, each pointing at the exact node.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..engine._errors import ConfigError, Problem
from ..engine._yaml import LoadedYaml, load_yaml
from ._base import Notifier, SetupError
from ._policy import Defaults, DeliveryPolicy, DigestRule, QuietHours
from ._registry import get_kind, known_kinds

__all__ = ["ChannelConfig", "NotifierConfig", "SECTIONS", "load_config", "parse_config"]

SECTIONS = ("channels", "quiet_hours", "digest", "directory", "defaults", "calendars", "reports")
_CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")


@dataclass(frozen=True)
class ChannelConfig:
    """One validated channel: its kind, its options and where it was declared."""

    name: str
    kind: str
    options: Any  # the kind's pydantic model, or a dict for plugin kinds without a schema
    line: int
    column: int


@dataclass
class NotifierConfig:
    """The validated ``channels`` section plus the raw sections other parts of estateflow read.

    ``sections`` holds ``quiet_hours``, ``digest``, ``directory`` and ``defaults`` after
    ``${VAR}`` substitution; ``yaml`` keeps the position map so that their own validation can
    report FILE:LINE:COLUMN too.
    """

    filename: str
    channels: dict[str, ChannelConfig]
    sections: dict[str, Any] = field(default_factory=dict)
    yaml: LoadedYaml | None = None
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    calendars: dict[str, Any] = field(default_factory=dict)  # name -> BusinessCalendar
    reports: list[Any] = field(default_factory=list)  # validated ``reports:`` schedules

    def build(self) -> dict[str, Notifier]:
        """Build every channel; on any failure close the ones built and raise one ConfigError."""
        built: dict[str, Notifier] = {}
        problems: list[Problem] = []
        for channel in self.channels.values():
            definition = get_kind(channel.kind)
            try:
                if definition is None:
                    raise SetupError(f"unknown channel kind {channel.kind!r}")
                built[channel.name] = definition.builder(channel.name, channel.options)
            except SetupError as exc:
                problems.append(Problem(self.filename, channel.line, channel.column,
                                        f"channel {channel.name!r}: {exc.message}", exc.hint))
            except Exception as exc:  # noqa: BLE001 - a plugin's factory may raise anything
                problems.append(Problem(self.filename, channel.line, channel.column,
                                        f"channel {channel.name!r} could not be built: "
                                        f"{type(exc).__name__}: {exc}"))
        if problems:
            for notifier in built.values():
                notifier.close()
            raise ConfigError(problems)
        return built


def load_config(path: str | Path) -> NotifierConfig:
    """Read and validate ``estateflow.yaml``; raises :class:`ConfigError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), 1, 1, f"not UTF-8 text: {exc.reason}",
                                   "save the file as UTF-8")]) from None
    except OSError as exc:
        raise ConfigError([Problem(str(path.resolve()), 1, 1,
                                   f"cannot read file: {exc.strerror}")]) from None
    return parse_config(text, str(path))


def parse_config(text: str, filename: str = "<string>", *,
                 environ: Mapping[str, str] | None = None) -> NotifierConfig:
    """Parse configuration text; ``environ`` defaults to :data:`os.environ`."""
    loaded = load_yaml(text, filename)
    if loaded.data is None:
        raise ConfigError(loaded.problems)
    if not isinstance(loaded.data, dict):
        raise ConfigError([*loaded.problems, loaded.problem(
            (), "the configuration must be a mapping of sections",
            f"top-level keys: {', '.join(SECTIONS)}")])
    # YAML-level findings (duplicate keys, ``yes``/``no``) and schema findings together, so
    # that one run shows everything to fix.
    checker = _Checker(loaded, text, os.environ if environ is None else environ)
    config = checker.run()
    problems = list(dict.fromkeys([*loaded.problems, *checker.problems]))
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.line, p.column)))
    return config


class _Checker:
    def __init__(self, loaded: LoadedYaml, text: str, environ: Mapping[str, str]) -> None:
        self.loaded = loaded
        self.lines = text.splitlines()
        self.environ = environ
        self.problems: list[Problem] = []

    def add(self, path: tuple[Any, ...], message: str, hint: str = "", *,
            key: bool = False) -> None:
        self.problems.append(self.loaded.problem(path, message, hint, key=key))

    def run(self) -> NotifierConfig:
        data: dict[str, Any] = self.loaded.data
        data = self.substitute(data, ())
        for key in data:
            if key not in SECTIONS:
                self.add((key,), f"unknown top-level key {key!r}",
                         f"allowed: {', '.join(SECTIONS)}", key=True)
        channels = self.channels(data.get("channels"))
        sections = {k: v for k, v in data.items() if k in SECTIONS and k != "channels"}
        if "log" not in channels:  # always available, so templates can name it blindly
            log_kind = get_kind("log")
            assert log_kind is not None and log_kind.options_model is not None
            channels["log"] = ChannelConfig("log", "log",
                                            log_kind.options_model.model_validate({"kind": "log"}),
                                            1, 1)
        policy = self.policy(sections, set(channels))
        calendars = self.calendars(sections.get("calendars"))
        from ..reports._schedule import check_reports_section

        reports, problems = check_reports_section(data.get("reports"), self.loaded, set(channels))
        self.problems.extend(problems)
        return NotifierConfig(self.loaded.filename, channels, sections, self.loaded, policy, calendars, reports)

    def calendars(self, section: Any) -> dict[str, Any]:
        """``calendars: {hk: {country: HK, timezone: Asia/Hong_Kong}}``; ``cn`` stays the default."""
        from ..engine._calendars import CalendarOptions
        from ..engine._errors import EstateflowError

        if section is None:
            return {}
        if not isinstance(section, dict):
            self.add(("calendars",), "'calendars' must be a mapping of calendar name to options",
                     "e.g. calendars:\n  hk: {country: HK, timezone: Asia/Hong_Kong}")
            return {}
        built = {}
        for name, options in section.items():
            path = ("calendars", name)
            model = self.section_model(CalendarOptions, options or {}, path, f"calendar {name!r}")
            if model is None:
                continue
            try:
                built[str(name)] = model.build(str(name))
            except (EstateflowError, ValueError, LookupError) as exc:
                text = str(exc)
                self.add(path, text if f"calendar {name!r}" in text else f"calendar {name!r}: {text}", key=True)
        return built

    # -- quiet hours, digest, defaults ----------------------------------------------------------
    def policy(self, sections: dict[str, Any], channels: set[str]) -> DeliveryPolicy:
        quiet_raw = sections.get("quiet_hours")
        quiet: list[QuietHours] = []
        entries: list[tuple[tuple[Any, ...], Any]] = []
        if isinstance(quiet_raw, dict):  # one period written without the list
            entries = [(("quiet_hours",), quiet_raw)]
        elif isinstance(quiet_raw, list):
            entries = [(("quiet_hours", index), item) for index, item in enumerate(quiet_raw)]
        elif quiet_raw is not None:
            self.add(("quiet_hours",), "'quiet_hours' must be a list of periods",
                     "e.g. quiet_hours:\n  - {from: '21:00', to: '08:00', channels: [sms]}")
        for path, item in entries:
            rule = self.section_model(QuietHours, item, path, "quiet_hours")
            if rule is not None:
                self.known_channels(rule.channels, (*path, "channels"), channels)
                quiet.append(rule)
        digest = None
        if sections.get("digest") is not None:
            digest = self.section_model(DigestRule, sections["digest"], ("digest",), "digest")
            if digest is not None:
                self.known_channels(digest.channels, ("digest", "channels"), channels)
        defaults = self.section_model(Defaults, sections.get("defaults") or {}, ("defaults",), "defaults")
        if defaults is not None and sections.get("defaults"):
            self.known_channels((defaults.channel,), ("defaults", "channel"), channels)
        return DeliveryPolicy(tuple(quiet), digest, defaults or Defaults())

    def known_channels(self, names: Any, path: tuple[Any, ...], channels: set[str]) -> None:
        for index, name in enumerate(names or ()):
            if name not in channels:
                close = difflib.get_close_matches(name, sorted(channels), n=1)
                where = (*path, index) if path[-1] == "channels" else path  # a list, or defaults.channel
                self.add(where, f"unknown channel {name!r}",
                         f"did you mean {close[0]!r}?" if close else f"channels: {', '.join(sorted(channels))}")

    def section_model(self, model: Any, value: Any, path: tuple[Any, ...], section: str) -> Any:
        if not isinstance(value, dict):
            self.add(path, f"'{section}' entries must be mappings")
            return None
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(error["loc"])
                dotted = ".".join(str(p) for p in loc)
                if error["type"] == "extra_forbidden":
                    known = sorted(f.alias or n for n, f in model.model_fields.items())
                    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
                    self.add((*path, *loc), f"{section}: unknown option {dotted!r}",
                             f"did you mean {close[0]!r}?" if close else f"options: {', '.join(known)}", key=True)
                elif error["type"] == "missing":
                    self.add(path, f"{section}: missing required option {dotted!r}", key=True)
                else:
                    message = str(error["msg"]).removeprefix("Value error, ")
                    self.add((*path, *loc), f"{section}: option {dotted!r}: {message}")
            return None

    # -- ${VAR} ---------------------------------------------------------------------------
    def substitute(self, value: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(value, dict):
            return {k: self.substitute(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.substitute(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            return _VAR.sub(lambda m: self._replace(m, path), value)
        return value

    def _replace(self, match: re.Match[str], path: tuple[Any, ...]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name is None:
            self._var_problem(path, "${", "malformed variable reference",
                              "write ${NAME} or ${NAME:-default}; NAME is letters, digits, '_'")
            return token
        found = self.environ.get(name)
        if default is not None and not found:
            return default
        if found is None:
            self._var_problem(path, "${" + name, f"environment variable {name} is not set",
                              f"export {name}=..., or write ${{{name}:-default}}")
            return ""
        return found

    def _var_problem(self, path: tuple[Any, ...], needle: str, message: str, hint: str) -> None:
        """Point at the ``${`` itself when it is on the value's first line."""
        line, column = self.loaded.where(path)
        if 0 < line <= len(self.lines):
            found = self.lines[line - 1].find(needle, column - 1)
            if found >= 0:
                column = found + 1
        self.problems.append(Problem(self.loaded.filename, line, column, message, hint))

    # -- channels -------------------------------------------------------------------------
    def channels(self, section: Any) -> dict[str, ChannelConfig]:
        if section is None:
            return {}
        if not isinstance(section, dict):
            self.add(("channels",), "'channels' must be a mapping of channel name to options",
                     "e.g. channels:\\n  email:\\n    kind: email")
            return {}
        result = {}
        for name, options in section.items():
            path = ("channels", name)
            if not isinstance(name, str) or not _CHANNEL_NAME.match(name):
                self.add(path, f"channel name {name!r} is not allowed",
                         "use lower-case letters, digits and '_', starting with a letter", key=True)
                continue
            if not isinstance(options, dict):
                self.add(path, f"channel {name!r} must be a mapping of options",
                         "at least 'kind: ...'")
                continue
            channel = self.channel(name, options)
            if channel is not None:
                result[name] = channel
        return result

    def channel(self, name: str, options: dict[str, Any]) -> ChannelConfig | None:
        path = ("channels", name)
        kinds = ", ".join(known_kinds())
        kind = options.get("kind")
        if kind is None:
            self.add(path, f"channel {name!r}: missing required key 'kind'",
                     f"known kinds: {kinds}", key=True)
            return None
        definition = get_kind(kind) if isinstance(kind, str) else None
        if definition is None:
            close = difflib.get_close_matches(str(kind), known_kinds(), n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            self.add((*path, "kind"), f"channel {name!r}: unknown kind {kind!r}",
                     f"{guess}known kinds: {kinds}")
            return None
        if definition.unavailable:
            self.add((*path, "kind"), f"channel {name!r}: kind {kind!r} is not available",
                     definition.unavailable)
            return None
        line, column = self.loaded.where(path, key=True)
        if definition.options_model is None:
            return ChannelConfig(name, kind, dict(options), line, column)
        try:
            validated = definition.options_model.model_validate(options)
        except ValidationError as exc:
            self._pydantic(name, kind, definition.options_model, exc)
            return None
        return ChannelConfig(name, kind, validated, line, column)

    def _pydantic(self, name: str, kind: str, model: Any, exc: ValidationError) -> None:
        base = ("channels", name)
        for error in exc.errors():
            loc = tuple(error["loc"])
            dotted = ".".join(str(p) for p in loc)
            kind_of = error["type"]
            if kind_of == "extra_forbidden":
                known = sorted(f.alias or n for n, f in model.model_fields.items() if n != "kind")
                hint = "check the spelling"
                if len(loc) == 1:
                    close = difflib.get_close_matches(str(loc[0]), known, n=1)
                    hint = (f"did you mean {close[0]!r}?" if close
                            else f"options: {', '.join(known)}")
                self.add((*base, *loc), f"channel {name!r}: unknown option {dotted!r} for kind "
                         f"{kind!r}", hint, key=True)
            elif kind_of == "missing":
                self.add(base, f"channel {name!r}: missing required option {dotted!r}",
                         f"add '{loc[-1]}:' under channels.{name}", key=True)
            else:
                message = str(error["msg"]).removeprefix("Value error, ")
                where = f"option {dotted!r}" if loc else "options"
                # A whole-model rule (loc == ()) points at the channel's name.
                self.add((*base, *loc), f"channel {name!r}: {where}: {message}", key=not loc)
