"""The HTML alternative of e-mails: the rendered plain-text notice inside a small, safe layout.

Why one layout around the text template rather than a second template per notice: every notice
already has a reviewed zh/en text (checked by ``validate``); duplicating each in HTML would let
the two drift. The layout adds what HTML is good at — a heading, the key facts as a table, the
digest as a list — and is rendered autoescaped in the sandbox, so a customer's complaint text
containing ``<script>`` arrives as text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._expr import default_sandbox

__all__ = ["render_html"]

_LABELS = {
    "zh": {"case": "编号", "state": "状态", "due": "时限", "level": "升级级别", "footer": "本邮件由 estateflow 自动发送，请勿直接回复。"},
    "en": {"case": "Case", "state": "State", "due": "Due", "level": "Escalation level",
           "footer": "Sent automatically by estateflow; please do not reply to this e-mail."},
}

_LAYOUT = """<!DOCTYPE html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><title>{{ subject }}</title></head>
<body style="font-family: -apple-system, 'PingFang SC', 'Microsoft YaHei', sans-serif; color: #222;">
<h2 style="font-size: 18px; margin: 0 0 12px;">{{ subject }}</h2>
{% for paragraph in paragraphs %}<p style="margin: 0 0 8px;">{{ paragraph }}</p>
{% endfor %}{% if facts %}<table style="border-collapse: collapse; margin: 12px 0;">
{% for name, value in facts %}<tr><th style="text-align: left; padding: 2px 12px 2px 0; color: #666;">{{ name }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>
{% endif %}{% if items %}<ul style="padding-left: 20px;">
{% for item in items %}<li>{{ item }}</li>
{% endfor %}</ul>
{% endif %}<p style="color: #999; font-size: 12px; margin-top: 16px;">{{ footer }}</p>
</body></html>
"""
_NAMES = ("lang", "subject", "paragraphs", "facts", "items", "footer")


def render_html(subject: str, body: str, language: str, *, case: Mapping[str, Any] | None = None,
                due_at: str | None = None, level: int = 0, items: Sequence[str] = ()) -> str:
    """An HTML document for one e-mail; ``items`` lists a digest's messages."""
    labels = _LABELS.get(language, _LABELS["zh"])
    facts: list[tuple[str, str]] = []
    if case:
        facts.append((labels["case"], str(case.get("number", ""))))
        facts.append((labels["state"], str(case.get("state", ""))))
    if due_at:
        facts.append((labels["due"], due_at))
    if level:
        facts.append((labels["level"], str(level)))
    paragraphs = [line for line in body.splitlines() if line.strip()]
    template = default_sandbox().compile_template(_LAYOUT, _NAMES, html=True)
    return template.render({"lang": "en" if language == "en" else "zh-CN", "subject": subject,
                            "paragraphs": paragraphs, "facts": facts, "items": list(items),
                            "footer": labels["footer"]})
