"""estateflow.yaml channel configuration: ${VAR} substitution and FILE:LINE:COLUMN problems."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from estateflow import ConfigError
from estateflow.notifiers import (DingTalkNotifier, EmailNotifier, FeishuNotifier, LogNotifier,
                                  RateLimit, WebhookNotifier, load_config, parse_config)
from estateflow.notifiers._apprise import apprise_available

EXAMPLE = Path(__file__).parent / "data" / "config" / "estateflow.yaml"
ENV = {"WEBHOOK_SECRET": "whsec", "DINGTALK_TOKEN": "tok123", "DINGTALK_SECRET": "SECabc",
       "WECOM_KEY": "k-1", "FEISHU_HOOK": "hook-1", "FEISHU_SECRET": "fs"}


def parse(text: str, env: dict[str, str] | None = None):
    return parse_config(textwrap.dedent(text).lstrip("\n"), "estateflow.yaml",
                        environ=ENV if env is None else env)


def problems_of(text: str, env: dict[str, str] | None = None):
    with pytest.raises(ConfigError) as info:
        parse(text, env)
    return info.value.problems


# -- substitution and the happy path --------------------------------------------------------
def test_example_file_loads_and_builds_every_channel(monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("SMTP_HOST", "SMTP_PORT", "SMTP_USER", "SMTP_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    config = load_config(EXAMPLE)
    assert config.sections["quiet_hours"] == {"start": "22:00", "end": "08:00"}
    notifiers = config.build()
    try:
        assert set(notifiers) == {"email", "ops", "dingtalk_cs", "wecom_repair", "feishu_mgmt",
                                  "sms", "log"}
        email = notifiers["email"]
        assert isinstance(email, EmailNotifier)
        assert (email.host, email.port, email.username) == ("127.0.0.1", 1025, None)
        ding = notifiers["dingtalk_cs"]
        assert isinstance(ding, DingTalkNotifier)
        assert ding.url.endswith("access_token=tok123") and ding.secret == "SECabc"
        assert ding.rate_limit == RateLimit(20, 60)
        feishu = notifiers["feishu_mgmt"]
        assert isinstance(feishu, FeishuNotifier) and feishu.rate_limit == RateLimit(100, 60)
        assert isinstance(notifiers["ops"], WebhookNotifier) and notifiers["ops"].secret == "whsec"
        assert isinstance(notifiers["log"], LogNotifier)  # always there
    finally:
        for notifier in notifiers.values():
            notifier.close()


def test_substitution_rules():
    config = parse("""
        channels:
          ops:
            kind: webhook
            url: https://${HOST}/hook?a=${MISSING:-x}&b=${EMPTY:-y}&c=$${LITERAL}
            secret: "${TRICKY}"
            timeout: ${TIMEOUT:-2.5}
    """, {"HOST": "hooks.example.com", "EMPTY": "", "TRICKY": "a: b\n- c"})
    options = config.channels["ops"].options
    assert options.url == "https://hooks.example.com/hook?a=x&b=y&c=${LITERAL}"
    assert options.secret.get_secret_value() == "a: b\n- c"  # no YAML injection from the env
    assert options.timeout == 2.5


def test_defaults_apply_and_empty_credentials_mean_none():
    config = parse("""
        channels:
          email:
            kind: email
            host: smtp.example.com
            from: cs@example.com
            username: ${SMTP_USER:-}
            password: ${SMTP_PASSWORD:-}
    """, {})
    options = config.channels["email"].options
    assert options.username is None and options.password is None
    assert options.security == "starttls"


def test_secrets_do_not_show_in_repr():
    config = parse("""
        channels:
          ops: {kind: webhook, url: "https://h.example.com/", secret: "${WEBHOOK_SECRET}"}
    """)
    assert "whsec" not in repr(config)


# -- broken files: each problem names the line and column -----------------------------------
BROKEN = [
    pytest.param("""
        channels:
          ops:
            kind: webhook
            url: https://hooks.example.com/estateflow
            secret: ${WEBHOOK_SECRET}
    """, 5, 13, "WEBHOOK_SECRET is not set", id="unset-variable"),
    pytest.param("""
        channels:
          dingtalk_cs:
            kind: dingtalk
            url: https://oapi.dingtalk.com/robot/send?access_token=${DINGTALK_TOKEN}
    """, 4, 60, "DINGTALK_TOKEN is not set", id="unset-variable-inside-url"),
    pytest.param("""
        channels:
          ops:
            kind: webhook
            url: "https://h.example.com/${ BAD}"
    """, 4, 33, "malformed variable reference", id="malformed-variable"),
    pytest.param("""
        channels:
          log: {kind: log}
        quite_hours:
          start: "22:00"
    """, 3, 1, "unknown top-level key 'quite_hours'", id="unknown-top-level-key"),
    pytest.param("""
        channels:
          dingtalk_cs:
            kind: dingding
            url: https://oapi.dingtalk.com/robot/send?access_token=x
    """, 3, 11, "unknown kind 'dingding'", id="unknown-kind"),
    pytest.param("""
        channels:
          email:
            kind: email
            hots: smtp.example.com
            from: cs@example.com
    """, 4, 5, "unknown option 'hots'", id="unknown-option"),
    pytest.param("""
        channels:
          email:
            kind: email
            host: smtp.example.com
            port: twenty-five
            from: cs@example.com
    """, 5, 11, "option 'port'", id="wrong-type"),
    pytest.param("""
        channels:
          ops:
            kind: webhook
            url: ftp://hooks.example.com/estateflow
    """, 4, 10, "bad URL scheme 'ftp'", id="bad-url-scheme"),
    pytest.param("""
        channels:
          email:
            kind: email
            from: cs@example.com
    """, 2, 3, "missing required option 'host'", id="missing-option"),
    pytest.param("""
        channels:
          ops:
            url: https://hooks.example.com/estateflow
    """, 2, 3, "missing required key 'kind'", id="missing-kind"),
    pytest.param("""
        channels:
          email:
            kind: email
            host: smtp.example.com
            security: tls
            from: cs@example.com
    """, 5, 15, "option 'security'", id="bad-choice"),
    pytest.param("""
        channels:
          Ops-Team:
            kind: log
    """, 2, 3, "channel name 'Ops-Team' is not allowed", id="bad-channel-name"),
    pytest.param("""
        channels:
          robot:
            kind: wecom
            url: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k
            rate_limit:
              count: 0
              per_seconds: 60
    """, 6, 14, "option 'rate_limit.count'", id="nested-range"),
    pytest.param("""
        channels:
          email:
            kind: email
            host: smtp.example.com
            from: cs@example.com
            username: cs
    """, 2, 3, "give both username and password", id="model-rule"),
    pytest.param("""
        channels:
          ops:
            kind: webhook
            url: https://hooks.example.com/estateflow
            headers:
              Idempotency-Key: fixed
    """, 6, 7, "cannot be overridden", id="reserved-header"),
    pytest.param("""
        channels:
          robot:
            kind: wecom
            url: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k
            secret: not-for-wecom
    """, 5, 5, "unknown option 'secret' for kind 'wecom'", id="option-of-other-kind"),
    pytest.param("""
        channels:
          email:
            kind: email
            host: smtp.example.com
            from: cs@example.com
          email:
            kind: log
    """, 6, 3, "duplicate key 'email'", id="duplicate-channel"),
    pytest.param("""
        channels:
          log:
            kind: log
            mask: no
    """, 4, 11, "ambiguous", id="yaml11-boolean"),
    pytest.param("""
        channels:
          email:
            kind: email
            from: 客服
            host: smtp.example.com
    """, 4, 11, "expected an address", id="bad-from-address"),
]


@pytest.mark.parametrize("text, line, column, fragment", BROKEN)
def test_broken_file_reports_line_and_column(text, line, column, fragment):
    problems = problems_of(text, {})
    assert any(fragment in p.message for p in problems), problems
    found = next(p for p in problems if fragment in p.message)
    assert (found.file, found.line, found.column) == ("estateflow.yaml", line, column), found


def test_unknown_kind_hint_lists_the_known_kinds():
    problems = problems_of("""
        channels:
          x: {kind: pager}
    """)
    assert "dingtalk" in problems[0].hint and "email" in problems[0].hint
    assert "wecom" in problems[0].hint and "feishu" in problems[0].hint


def test_all_problems_are_reported_at_once_in_file_order():
    problems = problems_of("""
        channels:
          email:
            kind: email
            host: smtp.example.com
            from: cs@example.com
            password: ${SMTP_PASSWORD}
          ops:
            kind: webhook
            url: ftp://x.example.com/
          robot:
            kind: robot
        digest: {every: 1h}
        extra: 1
    """, {})
    positions = [(p.line, p.column) for p in problems]
    assert positions == sorted(positions)
    text = "\n".join(str(p) for p in problems)
    for fragment in ("SMTP_PASSWORD", "bad URL scheme", "unknown kind 'robot'", "'extra'"):
        assert fragment in text
    assert str(problems[0]).startswith("estateflow.yaml:6:")


def test_yaml_level_and_schema_problems_come_together():
    problems = problems_of("""
        channels:
          log:
            kind: log
            mask: no
          ops:
            kind: webhook
    """, {})
    assert [(p.line, p.column) for p in problems] == [(4, 11), (5, 3)]
    assert "ambiguous" in problems[0].message and "'url'" in problems[1].message


@pytest.mark.skipif(apprise_available(), reason="apprise is installed here")
def test_apprise_without_the_extra_points_at_kind_with_install_hint():
    problems = problems_of("""
        channels:
          pager:
            kind: apprise
            urls: ["mailto://user:pass@example.com"]
    """)
    assert (problems[0].line, problems[0].column) == (3, 11)
    assert "install estateflow[apprise]" in problems[0].hint


def test_missing_file_names_the_absolute_path(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in str(info.value)


def test_document_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "estateflow.yaml"
    path.write_text("- channels\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].line == 1


def test_named_calendars_come_from_the_configuration(tmp_path, sqlite_url):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from estateflow import Engine
    from tests.engine_helpers import DATA, ACTORS
    from estateflow import StaticDirectory

    source = (DATA / "ticket.yaml").read_text(encoding="utf-8").replace('version: "1"', 'version: "1"\ncalendar: hk')
    (tmp_path / "wf").mkdir()
    (tmp_path / "wf" / "ticket.yaml").write_text(source, encoding="utf-8")
    config = parse_config("calendars:\n  hk: {country: HK, timezone: Asia/Hong_Kong}\n", "estateflow.yaml")
    engine = Engine(sqlite_url, tmp_path / "wf", create=True, config=config, directory=StaticDirectory(ACTORS))
    assert engine.calendar_set.names == ["cn", "hk"]
    monday = datetime(2025, 9, 29, 10, tzinfo=ZoneInfo("Asia/Hong_Kong"))
    case = engine.open("ticket", {"community": "east", "summary": "x"}, actor="clerk", now=monday)
    engine.fire(case.id, "start", actor="clerk", data={"assignee": "worker", "department": "eng"}, now=monday)
    [clock] = engine.clocks(case.id, now=monday)
    # Hong Kong: 1 October is a holiday, 2 and 3 October are working days (the mainland rests to the 8th).
    assert clock.calendar == "hk"
    assert clock.due_at == datetime(2025, 10, 3, 18, tzinfo=ZoneInfo("Asia/Hong_Kong"))


def test_bad_calendar_options_are_reported_with_positions():
    with pytest.raises(ConfigError) as caught:
        parse_config("calendars:\n  hk: {country: HK, timezone: Asia/Hong_Kongg}\n  x: {contry: CN}\n",
                     "estateflow.yaml")
    assert [str(p).split(" (hint")[0] for p in caught.value.problems] == [
        "estateflow.yaml:2:3: calendar 'hk': unknown time zone 'Asia/Hong_Kongg'",
        "estateflow.yaml:3:7: calendar 'x': unknown option 'contry'"]
