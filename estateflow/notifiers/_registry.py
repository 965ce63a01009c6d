"""Channel kinds: their option schemas, how to build each, and plugins from entry points.

Why a registry and not import paths in YAML: DESIGN principle 4 — nothing named in a file is
imported or executed unless it is on an allowlist. The allowlist is the built-in kinds, kinds
the embedding application registers with :func:`register_kind`, and installed distributions
that declare an entry point in the group ``estateflow.notifiers`` (installing a package is an
admin's deliberate act; editing a YAML file is not).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from importlib import metadata
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr,
                      ValidationError, field_validator, model_validator)

from ..engine._errors import ConfigError, DeliveryError, Problem
from ._apprise import INSTALL_HINT, AppriseNotifier, apprise_available
from ._base import Message, Notifier, RateLimit, Receipt, SetupError, delivery_error
from ._email import EmailNotifier
from ._log import LogNotifier
from ._robots import ROBOT_RATE_LIMIT, DingTalkNotifier, FeishuNotifier, WeComNotifier
from ._sms import SmsNotifier
from ._webhook import RESERVED_HEADERS, WebhookNotifier

__all__ = ["ENTRY_POINT_GROUP", "Kind", "NotifierFactory", "create_notifier", "get_kind",
           "known_kinds", "register_kind"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "estateflow.notifiers"
NotifierFactory = Callable[[str, dict[str, Any]], Notifier]
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


# -- option schemas ---------------------------------------------------------------------------
def _empty_is_none(value: Any) -> Any:
    """``${SMTP_USER:-}`` yields "": treat an empty optional credential as not given."""
    return None if value == "" else value


def _check_url(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise ValueError(f"bad URL scheme {scheme if sep else value!r}: use https:// "
                         f"(or http:// inside a private network)")
    if not rest or rest.startswith(("/", "?")):
        raise ValueError("the URL has no host")
    return value


Url = Annotated[str, AfterValidator(_check_url)]
Secret = Annotated[SecretStr | None, BeforeValidator(_empty_is_none)]
OptionalText = Annotated[str | None, BeforeValidator(_empty_is_none)]
Seconds = Annotated[float, Field(gt=0, le=600)]


class RateLimitOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    count: int = Field(ge=1)
    per_seconds: float = Field(gt=0)


class ChannelOptions(BaseModel):
    """Options every kind accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str
    rate_limit: RateLimitOptions | None = None

    def limit(self, default: RateLimit | None = None) -> RateLimit | None:
        if self.rate_limit is None:
            return default
        return RateLimit(self.rate_limit.count, self.rate_limit.per_seconds)


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    for key, value in headers.items():
        if not _HEADER_NAME.match(key):
            raise ValueError(f"{key!r} is not a valid HTTP header name")
        if key.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {key!r} is set by estateflow and cannot be overridden")
        if not value.isascii() or "\n" in value or "\r" in value:
            raise ValueError(f"header {key!r} must be one line of ASCII text")
    return headers


Headers = Annotated[dict[str, str], AfterValidator(_check_headers)]


class LogOptions(ChannelOptions):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    mask: bool = True


class EmailOptions(ChannelOptions):
    host: str = Field(min_length=1)
    port: int | None = Field(None, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: OptionalText = None
    password: Secret = None
    sender: str = Field(alias="from")
    timeout: Seconds = 30.0

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if "@" not in parseaddr(value)[1]:
            raise ValueError("expected an address such as '物业客服 <cs@example.com>'")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> EmailOptions:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        return self


class WebhookOptions(ChannelOptions):
    url: Url
    timeout: Seconds = 10.0
    secret: Secret = None
    headers: Headers = Field(default_factory=dict)


class DingTalkOptions(ChannelOptions):
    url: Url
    secret: Secret = None
    msgtype: Literal["text", "markdown"] = "text"
    timeout: Seconds = 10.0


class WeComOptions(ChannelOptions):
    url: Url
    msgtype: Literal["text", "markdown"] = "text"
    timeout: Seconds = 10.0


class FeishuOptions(ChannelOptions):
    url: Url
    secret: Secret = None
    timeout: Seconds = 10.0


class SmsOptions(ChannelOptions):
    url: Url
    sign_name: str = Field(min_length=1)
    timeout: Seconds = 10.0
    secret: Secret = None
    headers: Headers = Field(default_factory=dict)


class AppriseOptions(ChannelOptions):
    urls: list[str] = Field(min_length=1)


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


# -- kinds ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    """A channel kind: optional option schema, and a builder ``(channel name, options)``.

    Built-in builders receive the validated pydantic model; registered and entry-point
    factories receive a plain dict (the model's dump when they declare ``options_model``).
    """

    name: str
    options_model: type[BaseModel] | None
    builder: Callable[[str, Any], Notifier]
    origin: str = "built-in"
    unavailable: str = ""  # non-empty: why this kind cannot be used here (hint text)


_BUILTIN: dict[str, Kind] = {k.name: k for k in [
    Kind("log", LogOptions, lambda n, o: LogNotifier(n, level=o.level, mask=o.mask,
                                                      rate_limit=o.limit())),
    Kind("email", EmailOptions, lambda n, o: EmailNotifier(
        n, host=o.host, port=o.port, security=o.security, username=o.username,
        password=_secret(o.password), sender=o.sender, timeout=o.timeout, rate_limit=o.limit())),
    Kind("webhook", WebhookOptions, lambda n, o: WebhookNotifier(
        n, url=o.url, timeout=o.timeout, secret=_secret(o.secret), headers=o.headers,
        rate_limit=o.limit())),
    Kind("dingtalk", DingTalkOptions, lambda n, o: DingTalkNotifier(
        n, url=o.url, secret=_secret(o.secret), msgtype=o.msgtype, timeout=o.timeout,
        rate_limit=o.limit(ROBOT_RATE_LIMIT))),
    Kind("wecom", WeComOptions, lambda n, o: WeComNotifier(
        n, url=o.url, msgtype=o.msgtype, timeout=o.timeout, rate_limit=o.limit(ROBOT_RATE_LIMIT))),
    Kind("feishu", FeishuOptions, lambda n, o: FeishuNotifier(
        n, url=o.url, secret=_secret(o.secret), timeout=o.timeout,
        rate_limit=o.limit(ROBOT_RATE_LIMIT))),
    Kind("sms", SmsOptions, lambda n, o: SmsNotifier(
        n, url=o.url, sign_name=o.sign_name, timeout=o.timeout, secret=_secret(o.secret),
        headers=o.headers, rate_limit=o.limit())),
    Kind("apprise", AppriseOptions, lambda n, o: AppriseNotifier(n, urls=o.urls,
                                                                  rate_limit=o.limit())),
]}
_REGISTERED: dict[str, Kind] = {}


def register_kind(kind: str, factory: NotifierFactory,
                  options_model: type[BaseModel] | None = None) -> None:
    """Let the embedding application add a channel kind (e.g. its own app-push service).

    ``factory(name, options)`` gets the channel's options as a dict (without ``kind``). With
    ``options_model`` the options are validated first, so mistakes get FILE:LINE:COLUMN.
    """
    if kind in _BUILTIN:
        raise ValueError(f"{kind!r} is a built-in channel kind")
    _REGISTERED[kind] = Kind(kind, options_model, _dict_builder(factory, options_model),
                             origin="registered")


def _dict_builder(factory: NotifierFactory,
                  model: type[BaseModel] | None) -> Callable[[str, Any], Notifier]:
    def build(name: str, options: Any) -> Notifier:
        if isinstance(options, BaseModel):
            options = options.model_dump(by_alias=True)
        options = {k: v for k, v in dict(options).items() if k != "kind"}
        notifier = factory(name, options)
        missing = [a for a in ("name", "send", "close") if not hasattr(notifier, a)]
        if missing:
            raise SetupError(f"the plugin's factory returned {type(notifier).__name__}, "
                             f"which lacks {', '.join(missing)}", "fix the plugin")
        return _Guarded(notifier)
    return build


def _entry_points() -> dict[str, metadata.EntryPoint]:
    try:
        return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # noqa: BLE001 - a broken distribution must not break configuration
        log.exception("could not list entry points in group %s", ENTRY_POINT_GROUP)
        return {}


def known_kinds() -> list[str]:
    """Every kind a configuration may name here: built-in, registered and entry points."""
    return sorted({*_BUILTIN, *_REGISTERED, *_entry_points()})


def get_kind(kind: str) -> Kind | None:
    """The kind's definition, loading its entry point on first use; ``None`` if unknown."""
    if kind in _BUILTIN:
        found = _BUILTIN[kind]
        if kind == "apprise" and not apprise_available():
            return Kind(found.name, found.options_model, found.builder, found.origin, INSTALL_HINT)
        return found
    if kind in _REGISTERED:
        return _REGISTERED[kind]
    entry = _entry_points().get(kind)
    if entry is None:
        return None
    try:
        factory = entry.load()
    except Exception as exc:  # noqa: BLE001 - report, do not crash the whole configuration
        return Kind(kind, None, _unusable, f"entry point {entry.value}",
                    f"plugin {entry.value!r} failed to import: {type(exc).__name__}: {exc}")
    model = getattr(factory, "options_model", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        model = None
    return Kind(kind, model, _dict_builder(factory, model), f"entry point {entry.value}")


def _unusable(name: str, options: Any) -> Notifier:
    raise SetupError("this channel kind cannot be loaded")


def create_notifier(kind: str, name: str, options: Mapping[str, Any] | None = None) -> Notifier:
    """Build one notifier in code, without a file; bad options raise :class:`ConfigError`."""
    where = f"<channel {name}>"
    definition = get_kind(kind)
    if definition is None:
        raise ConfigError([Problem(where, 1, 1, f"unknown channel kind {kind!r}",
                                   f"known kinds: {', '.join(known_kinds())}")])
    if definition.unavailable:
        raise ConfigError([Problem(where, 1, 1, f"channel kind {kind!r} is not available",
                                   definition.unavailable)])
    raw = {**dict(options or {}), "kind": kind}
    try:
        model = definition.options_model
        validated = model.model_validate(raw) if model else raw
        return definition.builder(name, validated)
    except ValidationError as exc:
        raise ConfigError([Problem(where, 1, 1, f"{'.'.join(map(str, e['loc']))}: {e['msg']}")
                           for e in exc.errors()]) from None
    except SetupError as exc:
        raise ConfigError([Problem(where, 1, 1, exc.message, exc.hint)]) from None


class _Guarded:
    """Wraps a plugin notifier so that its send() honours the contract (only DeliveryError)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name: str = inner.name
        self.rate_limit: RateLimit | None = getattr(inner, "rate_limit", None)

    def send(self, message: Message) -> Receipt:
        try:
            return self.inner.send(message)
        except DeliveryError:
            raise
        except Exception as exc:  # noqa: BLE001 - the point of this wrapper
            raise delivery_error(self.name, f"plugin raised {type(exc).__name__}: {exc}",
                                 retryable=True) from exc

    def close(self) -> None:
        try:
            self.inner.close()
        except Exception:  # noqa: BLE001 - closing must not mask the caller's own error
            log.exception("closing channel %s failed", self.name)
