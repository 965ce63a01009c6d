"""Group-robot presets: ``dingtalk`` (钉钉), ``wecom`` (企业微信) and ``feishu`` (飞书).

Each is a webhook with its own body, signing and error format. What was checked (search of
public docs, issues and code, see the report of the change that added this file):

* DingTalk custom robot: sign = urlEncode(base64(HmacSHA256(key=secret,
  msg=f"{timestamp_ms}\\n{secret}"))), sent as ``timestamp`` and ``sign`` query parameters next
  to ``access_token`` (DingTalk "自定义机器人安全设置 / 加签" doc as quoted on
  gitbook.curiouser.top and apifox.com). Failures come back as HTTP 200 with
  ``{"errcode": N, "errmsg": ...}``; 130101 = "send too fast, exceed 20 times per minute"
  (ccfos/nightingale#369) and the robot is then throttled for 10 minutes; 310000 = "sign not
  match" / "keywords not in content" / "invalid timestamp" (x-cold/dingtalk-robot#7,
  timonwong/prometheus-webhook-dingtalk#197, jenkinsci/dingtalk-plugin#116).
* WeCom group robot: no signing (the ``key`` in the URL is the credential); 20 messages per
  minute per robot (企业微信 "群机器人配置说明"); 45009 = "api freq out of limit"
  (WecomTeam/wecom-openclaw-plugin#48); 93000 = invalid webhook URL; -1 = system busy.
  ``text.content`` is at most 2048 bytes, ``markdown.content`` 4096 bytes.
* Feishu custom bot: sign = base64(HmacSHA256(key=f"{timestamp_s}\\n{secret}", msg=b"")),
  sent as ``timestamp`` and ``sign`` fields in the JSON body (electricbubble/feishu-bot-api,
  YourTongji WEBHOOK_SETUP.md, juejin 7391005009667293199); 19021 = sign mismatch or clock
  off by more than an hour; 11232 = frequency limited (openclaw commit 90c787096);
  9499 = "Bad Request", which is also seen with "too many request" in its ``msg``. Feishu's
  own limit for custom bots is 100/min and 5/s; we default to DingTalk's stricter 20/min.

Why the rate-limit codes are retryable with ``retry_after``: the message itself is fine, only
the robot is saturated; the outbox waits and sends it later (ideally folded into a digest).
Every other non-zero code needs a person (wrong secret, missing keyword, deleted robot).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from typing import Any, ClassVar, Literal

import httpx

from ._base import Message, RateLimit, Receipt, delivery_error
from ._webhook import HttpChannel, json_bytes, parse_retry_after

__all__ = ["DingTalkNotifier", "FeishuNotifier", "ROBOT_RATE_LIMIT", "WeComNotifier",
           "dingtalk_sign", "feishu_sign"]

ROBOT_RATE_LIMIT = RateLimit(count=20, per_seconds=60)
MsgType = Literal["text", "markdown"]
_MOBILE = re.compile(r"^(?:\+?86)?(1[3-9][0-9]{9})$")


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk ``sign`` before URL encoding (httpx encodes it as a query parameter)."""
    string_to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), string_to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu ``sign``: the key is ``timestamp\\nsecret`` and the signed message is empty."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def _mentions(recipient: str) -> tuple[list[str], bool]:
    """Mobiles to @-mention and whether to @all; other tokens (a robot's name) are ignored."""
    mobiles, everyone = [], False
    for token in re.split(r"[\s,;，；]+", recipient or ""):
        if token.lower() in ("all", "@all"):
            everyone = True
        elif match := _MOBILE.match(token):
            mobiles.append(match.group(1))
    return mobiles, everyone


def _truncate(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[: max_bytes - 3].decode("utf-8", "ignore") + "…"


class _Robot(HttpChannel):
    """Shared send loop: sign, POST, then read the provider's error code from the body."""

    kind: ClassVar[str]
    code_field: ClassVar[tuple[str, ...]] = ("errcode",)
    message_field: ClassVar[tuple[str, ...]] = ("errmsg",)
    throttle_codes: ClassVar[dict[int, float | None]] = {}

    def __init__(self, name: str, *, url: str, secret: str | None = None,
                 msgtype: MsgType = "text", timeout: float = 10.0,
                 rate_limit: RateLimit | None = ROBOT_RATE_LIMIT,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(name, timeout=timeout, rate_limit=rate_limit, transport=transport)
        self.url = url
        self.secret = secret
        self.msgtype = msgtype

    def payload(self, message: Message, now: float) -> dict[str, Any]:
        """The provider's JSON body for ``message`` (``now`` in epoch seconds, for signing)."""
        raise NotImplementedError

    def target(self, now: float) -> str | httpx.URL:
        """Where to POST; DingTalk adds its signature to the query here."""
        return self.url

    def throttled(self, code: int, text: str) -> bool:
        """Whether a non-zero code means "too fast" (retry later) rather than "broken"."""
        return code in self.throttle_codes

    def send(self, message: Message) -> Receipt:
        """One POST; errcode 0 is success, rate-limit codes retryable, others permanent."""
        now = time.time()
        try:
            body = json_bytes(self.payload(message, now))
        except (TypeError, ValueError) as exc:
            raise delivery_error(self.name, f"cannot encode message: {exc}",
                                 retryable=False) from exc
        response = self.post(self.target(now), body)
        code, text = self._result(response)
        if code == 0 and response.is_success:
            return Receipt(self.name, None, f"{self.kind} accepted")
        if code is not None and self.throttled(code, text):
            header = parse_retry_after(response.headers.get("Retry-After"))
            wait = header if header is not None else self.throttle_codes.get(code, 60.0)
            raise delivery_error(self.name, f"{self.kind} rate limit: {code} {text}",
                                 retryable=True, retry_after=wait)
        if not response.is_success and (code in (None, 0) or response.status_code == 429
                                        or response.status_code >= 500):
            raise self.status_error(response)
        if code is None:
            raise delivery_error(self.name, f"{self.kind} answered HTTP {response.status_code} "
                                            f"without an error code: {response.text[:200]!r}",
                                 retryable=False)
        raise delivery_error(self.name, f"{self.kind} refused: {code} {text}", retryable=False)

    def _result(self, response: httpx.Response) -> tuple[int | None, str]:
        try:
            document = response.json()
        except ValueError:
            return None, ""
        if not isinstance(document, dict):
            return None, ""
        code = next((document[f] for f in self.code_field if f in document), None)
        text = next((str(document[f]) for f in self.message_field if f in document), "")
        try:
            return (int(code) if code is not None else None), text
        except (TypeError, ValueError):
            return None, text


class DingTalkNotifier(_Robot):
    """DingTalk custom robot (``https://oapi.dingtalk.com/robot/send?access_token=...``)."""

    kind = "dingtalk"
    throttle_codes = {130101: 600.0}  # throttled for 10 minutes after 20/min

    def target(self, now: float) -> str | httpx.URL:
        if not self.secret:
            return self.url
        timestamp = int(now * 1000)
        # Merge, never ``params=``: httpx replaces the URL's query (and access_token) with params.
        return httpx.URL(self.url).copy_merge_params(
            {"timestamp": str(timestamp), "sign": dingtalk_sign(self.secret, timestamp)})

    def payload(self, message: Message, now: float) -> dict[str, Any]:
        mobiles, everyone = _mentions(message.recipient)
        at_text = "".join(f" @{m}" for m in mobiles)
        at = {"atMobiles": mobiles, "isAtAll": everyone}
        if self.msgtype == "markdown":
            text = f"#### {message.subject}\n\n{message.body}{at_text}"
            return {"msgtype": "markdown", "markdown": {"title": message.subject, "text": text},
                    "at": at}
        content = f"{message.subject}\n{message.body}{at_text}"
        return {"msgtype": "text", "text": {"content": content}, "at": at}


class WeComNotifier(_Robot):
    """WeCom group robot (``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...``)."""

    kind = "wecom"
    throttle_codes = {45009: 60.0, -1: 30.0}  # -1: system busy, try again shortly

    def payload(self, message: Message, now: float) -> dict[str, Any]:
        mobiles, everyone = _mentions(message.recipient)
        if self.msgtype == "markdown":
            content = _truncate(f"**{message.subject}**\n{message.body}", 4096)
            return {"msgtype": "markdown", "markdown": {"content": content}}
        text: dict[str, Any] = {"content": _truncate(f"{message.subject}\n{message.body}", 2048)}
        if mobiles or everyone:
            text["mentioned_mobile_list"] = mobiles + (["@all"] if everyone else [])
        return {"msgtype": "text", "text": text}


class FeishuNotifier(_Robot):
    """Feishu custom bot (``https://open.feishu.cn/open-apis/bot/v2/hook/...``); text only."""

    kind = "feishu"
    code_field = ("code", "StatusCode")
    message_field = ("msg", "StatusMessage")
    throttle_codes = {11232: 60.0, 9499: 60.0}
    _TOO_FAST = re.compile(r"too many|frequen|rate limit|limited", re.IGNORECASE)

    def throttled(self, code: int, text: str) -> bool:
        # 9499 is Feishu's generic "Bad Request"; retrying a malformed body forever only fills
        # the outbox, so it counts as throttling only when the message says so.
        if code == 9499:
            return bool(self._TOO_FAST.search(text))
        return code in self.throttle_codes

    def payload(self, message: Message, now: float) -> dict[str, Any]:
        _, everyone = _mentions(message.recipient)
        mention = '<at user_id="all">所有人</at> ' if everyone else ""
        document: dict[str, Any] = {
            "msg_type": "text",
            "content": {"text": f"{mention}{message.subject}\n{message.body}"},
        }
        if self.secret:
            timestamp = int(now)
            document = {"timestamp": str(timestamp), "sign": feishu_sign(self.secret, timestamp),
                        **document}
        return document
