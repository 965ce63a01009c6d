"""The log channel, personal-data masking, and plugin kinds (registered and entry points)."""

from __future__ import annotations

import dataclasses
import logging
import textwrap

import pytest
from pydantic import BaseModel, ConfigDict

from estateflow import ConfigError, DeliveryError
from estateflow.notifiers import (LogNotifier, Message, Notifier, Receipt, create_notifier,
                                  known_kinds, mask_personal, parse_config, register_kind)
from estateflow.notifiers import _registry


def message(**extra) -> Message:
    fields = dict(channel="log", recipient="13812341234", subject="业主 zhangsan@example.com 投诉",
                  body="联系电话 +86 139-0000-0000 / 15912345678，邮箱 li.si@qq.com",
                  idempotency_key="case:TS-2026-000001:opened")
    fields.update(extra)
    return Message(**fields)


# -- masking and the log channel --------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("13812341234", "138****1234"),
    ("电话13812341234。", "电话138****1234。"),
    ("+8613812341234", "+86138****1234"),
    ("86 13812341234", "86 138****1234"),
    ("订单号 2013812341234999", "订单号 2013812341234999"),  # part of a longer number
    ("12812341234", "12812341234"),  # not a mobile prefix
    ("zhangsan@example.com", "z***@example.com"),
    ("联系a@b.cn或王五", "联系***@b.cn或王五"),
    ("BX-2026-000123", "BX-2026-000123"),
])
def test_mask_personal(text, expected):
    assert mask_personal(text) == expected


def test_log_notifier_masks_recipient_subject_and_body(caplog):
    caplog.set_level(logging.INFO, logger="estateflow.notify")
    receipt = LogNotifier("log").send(message())
    assert receipt == Receipt("log", None, "logged")
    record = caplog.records[-1]
    assert record.name == "estateflow.notify" and record.levelno == logging.INFO
    text = record.getMessage()
    assert "138****1234" in text and "z***@example.com" in text and "l***@qq.com" in text
    for secret in ("13812341234", "zhangsan@", "15912345678", "li.si@"):
        assert secret not in text


def test_log_notifier_without_masking_and_with_level(caplog):
    caplog.set_level(logging.DEBUG, logger="estateflow.notify")
    LogNotifier("audit", level="warning", mask=False).send(message())
    assert caplog.records[-1].levelno == logging.WARNING
    assert "13812341234" in caplog.records[-1].getMessage()


def test_builtin_notifiers_satisfy_the_protocol():
    assert isinstance(LogNotifier("log"), Notifier)
    webhook = create_notifier("webhook", "ops", {"url": "https://hooks.example.com/x"})
    assert isinstance(webhook, Notifier)
    webhook.close()
    webhook.close()  # twice is fine


def test_message_is_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        message().subject = "x"  # type: ignore[misc]


def test_create_notifier_reports_bad_options_and_unknown_kinds():
    with pytest.raises(ConfigError) as info:
        create_notifier("webhook", "ops", {"url": "hooks.example.com"})
    assert "bad URL scheme" in str(info.value)
    with pytest.raises(ConfigError) as info:
        create_notifier("pager", "x", {})
    assert "known kinds" in info.value.problems[0].hint


# -- plugin kinds --------------------------------------------------------------------------
class PagerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    team: str


class Pager:
    def __init__(self, name: str, options: dict) -> None:
        self.name = name
        self.options = options
        self.rate_limit = None

    def send(self, message: Message) -> Receipt:
        if message.recipient == "explode":
            raise RuntimeError("pager service crashed")
        return Receipt(self.name, "p-1")

    def close(self) -> None:
        pass


@pytest.fixture
def pager_kind():
    register_kind("pager", Pager, PagerOptions)
    yield
    _registry._REGISTERED.pop("pager", None)


def test_registered_kind_is_validated_built_and_guarded(pager_kind):
    assert "pager" in known_kinds()
    config = parse_config("channels:\n  oncall:\n    kind: pager\n    team: repair\n", "f.yaml")
    notifiers = config.build()
    oncall = notifiers["oncall"]
    assert oncall.send(message()) == Receipt("oncall", "p-1")
    assert oncall.inner.options == {"team": "repair"}
    with pytest.raises(DeliveryError) as info:
        oncall.send(message(recipient="explode"))
    assert info.value.retryable is True and "RuntimeError" in info.value.reason


def test_registered_kind_options_errors_have_positions(pager_kind):
    with pytest.raises(ConfigError) as info:
        parse_config("channels:\n  oncall:\n    kind: pager\n    teem: repair\n", "f.yaml")
    by_message = {p.message: (p.line, p.column, p.hint) for p in info.value.problems}
    assert by_message["channel 'oncall': unknown option 'teem' for kind 'pager'"] == \
        (4, 5, "did you mean 'team'?")
    assert by_message["channel 'oncall': missing required option 'team'"][:2] == (2, 3)


def test_builtin_kinds_cannot_be_replaced():
    with pytest.raises(ValueError):
        register_kind("email", Pager)


PLUGIN = '''
from estateflow.notifiers import Receipt

class Beeper:
    rate_limit = None
    def __init__(self, name, options):
        self.name, self.options = name, options
    def send(self, message):
        return Receipt(self.name, None, "beep " + self.options["tone"])
    def close(self):
        pass

def make_beeper(name, options):
    return Beeper(name, options)

def make_nothing(name, options):
    return object()
'''


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A real installed distribution (dist-info on sys.path) declaring entry points."""
    (tmp_path / "ef_beeper.py").write_text(PLUGIN, encoding="utf-8")
    info = tmp_path / "ef_beeper-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ef-beeper\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""
        [estateflow.notifiers]
        beeper = ef_beeper:make_beeper
        nothing = ef_beeper:make_nothing
        ghost = ef_beeper_missing:factory
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_entry_point_kind_builds_and_sends(installed_plugin):
    assert {"beeper", "ghost"} <= set(known_kinds())
    config = parse_config("channels:\n  lobby:\n    kind: beeper\n    tone: high\n", "f.yaml")
    notifiers = config.build()
    assert notifiers["lobby"].send(message()).detail == "beep high"


def test_entry_point_that_fails_to_import_is_a_positioned_problem(installed_plugin):
    with pytest.raises(ConfigError) as info:
        parse_config("channels:\n  x:\n    kind: ghost\n", "f.yaml")
    problem = info.value.problems[0]
    assert (problem.line, problem.column) == (3, 11)
    assert "ef_beeper_missing" in problem.hint


def test_entry_point_returning_a_non_notifier_fails_at_build(installed_plugin):
    config = parse_config("channels:\n  x:\n    kind: nothing\n", "f.yaml")
    with pytest.raises(ConfigError) as info:
        config.build()
    assert (info.value.problems[0].line, info.value.problems[0].column) == (2, 3)
