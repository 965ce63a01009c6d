"""When and in which form messages go out: quiet hours, digests, default channel and language.

Why a policy applied at delivery, not at queue time: the outbox row is the record of what an
event meant; *when* a person may be disturbed and whether fifty reminders become one message are
properties of the person and the channel that an operator may change at any time (edit
``estateflow.yaml``, restart). Applying them when a row is claimed means the new policy governs
every message still waiting.

Urgent messages (escalations and breaches of major complaints, the major-complaint notice to the
GM) ignore quiet hours and are never folded into a digest: DOMAIN.md sends major complaints
straight to the deputy GM/GM, whatever the hour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..engine._durations import Duration

__all__ = ["DEFAULT_DIGEST_EVENTS", "Defaults", "DeliveryPolicy", "DigestRule", "QuietHours"]

DEFAULT_DIGEST_EVENTS = ("warning", "breach", "escalation", "transition", "calendar")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _wall_clock(value: Any, what: str) -> Any:
    if isinstance(value, str):
        parsed = Duration.parse(value)
        if parsed.is_working_time or parsed.unit == "days":
            raise ValueError(f"{what} is wall-clock time: minutes or hours")
        return parsed.as_timedelta()
    return value


class QuietHours(_Model):
    """``from``–``to`` local time (may cross midnight) in which matching messages wait."""

    start: time = Field(alias="from")
    end: time = Field(alias="to")
    zone: str = "Asia/Shanghai"
    channels: tuple[str, ...] | None = None
    recipients: tuple[str, ...] | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _clock_time(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                hour, _, minute = value.strip().partition(":")
                return time(int(hour), int(minute or 0))
            except ValueError:
                raise ValueError(f"{value!r} is not a time of day; write 'HH:MM', e.g. '21:00'") from None
        return value

    @field_validator("zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai)") from None
        return value

    def applies(self, channel: str, recipient: str, who: str | None) -> bool:
        if self.channels is not None and channel not in self.channels:
            return False
        return self.recipients is None or recipient in self.recipients or (who is not None and who in self.recipients)

    def ends_after(self, now: datetime) -> datetime | None:
        """The end of the quiet period ``now`` falls in, or None when ``now`` is not quiet."""
        zone = ZoneInfo(self.zone)
        local = now.astimezone(zone)
        start = datetime.combine(local.date(), self.start, zone)
        end = datetime.combine(local.date(), self.end, zone)
        if self.start == self.end:
            return None
        if self.start < self.end:  # e.g. 12:00–13:30
            return end if start <= local < end else None
        if local >= start:  # e.g. 21:00–08:00, now 23:00: ends tomorrow 08:00
            return datetime.combine(local.date() + timedelta(days=1), self.end, zone)
        return end if local < end else None


class DigestRule(_Model):
    """Messages to one recipient on one channel within ``window`` after a send become one."""

    window: timedelta = timedelta(minutes=10)
    channels: tuple[str, ...] | None = None
    events: tuple[str, ...] = DEFAULT_DIGEST_EVENTS
    max_items: int = Field(default=100, ge=2, le=1000)

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return _wall_clock(value, "a digest window")

    def applies(self, channel: str, event: str) -> bool:
        return (self.channels is None or channel in self.channels) and event in self.events


class Defaults(_Model):
    """A retryable failure becomes a dead letter after ``max_attempts`` *and* ``give_up_after``
    (backoff from 30 s, capped at 1 h); ``estateflow outbox retry`` revives dead letters."""

    channel: str = "log"
    language: Literal["zh", "en"] = "zh"
    max_attempts: int = Field(default=8, ge=1, le=100)
    give_up_after: timedelta = timedelta(hours=24)

    @field_validator("give_up_after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return _wall_clock(value, "give_up_after")


@dataclass(frozen=True)
class DeliveryPolicy:
    quiet_hours: Sequence[QuietHours] = ()
    digest: DigestRule | None = None
    defaults: Defaults = field(default_factory=Defaults)

    @classmethod
    def from_sections(cls, sections: Mapping[str, Any]) -> DeliveryPolicy:
        """Build from already validated config sections (see ``_config``)."""
        quiet = sections.get("quiet_hours") or []
        if isinstance(quiet, Mapping):
            quiet = [quiet]
        digest = sections.get("digest")
        return cls(tuple(q if isinstance(q, QuietHours) else QuietHours.model_validate(q) for q in quiet),
                   None if digest is None else DigestRule.model_validate(digest),
                   Defaults.model_validate(sections.get("defaults") or {}))

    def quiet_until(self, channel: str, recipient: str, who: str | None, now: datetime) -> datetime | None:
        """When a message may go, if ``now`` is inside a matching quiet period (latest end wins)."""
        ends = [end for rule in self.quiet_hours if rule.applies(channel, recipient, who)
                for end in [rule.ends_after(now)] if end is not None]
        return max(ends) if ends else None

    def digestible(self, channel: str, event: str) -> bool:
        return self.digest is not None and self.digest.applies(channel, event)
