"""Webhook, robot and SMS channels against a real HTTP server on 127.0.0.1.

The fake DingTalk/WeCom/Feishu robots check signatures the way the real services document it
and answer with the real error shapes (HTTP 200 + errcode), so the channels' parsing and
classification are exercised end to end over a socket, without mocking the network.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from estateflow import DeliveryError
from estateflow.notifiers import (DingTalkNotifier, FeishuNotifier, Message, RateLimit,
                                  SmsNotifier, WebhookNotifier, WeComNotifier, create_notifier,
                                  verify_signature)

DING_SECRET = "SEC0123456789abcdef"
FEISHU_SECRET = "feishu-secret"


class Recorded:
    def __init__(self, path: str, headers: dict[str, str], body: bytes) -> None:
        self.path, self.headers, self.body = path, headers, body

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def json(self):
        return json.loads(self.body)


def _ding_expected(timestamp: str) -> str:
    digest = hmac.new(DING_SECRET.encode(), f"{timestamp}\n{DING_SECRET}".encode(),
                      hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _feishu_expected(timestamp: str) -> str:
    key = f"{timestamp}\n{FEISHU_SECRET}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        record = Recorded(self.path, dict(self.headers), body)
        self.server.requests.append(record)
        path = urlsplit(self.path).path
        if path.startswith("/dingtalk"):
            return self.reply(200, self.dingtalk(record))
        if path.startswith("/wecom"):
            key = record.query.get("key")
            codes = {"ok": (0, "ok"), "busy": (45009, "api freq out of limit"),
                     "gone": (93000, "invalid webhook url")}
            code, msg = codes[key]
            return self.reply(200, {"errcode": code, "errmsg": msg})
        if path.startswith("/feishu/"):
            return self.feishu(path.rsplit("/", 1)[1], record.json())
        if path.startswith("/sms"):
            return self.reply(200, {"id": "sms-1"})
        status = {"/hook": 200, "/500": 500, "/400": 400, "/429": 429, "/503": 503,
                  "/302": 302}.get(path, 404)
        if path == "/slow":
            time.sleep(1.5)
            status = 200
        headers = {"Retry-After": "120"} if path in ("/429", "/503") else {}
        if path == "/302":
            headers = {"Location": "https://elsewhere.example.com/"}
        self.reply(status, {"ok": status == 200}, headers)

    def dingtalk(self, record: Recorded) -> dict:
        query = record.query
        if query.get("access_token") is None:
            return {"errcode": 300001, "errmsg": "token is not exist"}
        timestamp, sign = query.get("timestamp", ""), query.get("sign", "")
        fresh = timestamp.isdigit() and abs(int(timestamp) / 1000 - time.time()) < 3600
        if not fresh or not hmac.compare_digest(sign, _ding_expected(timestamp)):
            return {"errcode": 310000, "errmsg": "sign not match"}
        return {"ok": {"errcode": 0, "errmsg": "ok"},
                "fast": {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"},
                "keyword": {"errcode": 310000, "errmsg": "keywords not in content"},
                }[query["access_token"]]

    def feishu(self, scenario: str, document: dict) -> None:
        timestamp, sign = document.get("timestamp", ""), document.get("sign", "")
        if not hmac.compare_digest(sign, _feishu_expected(timestamp)):
            return self.reply(200, {"code": 19021, "msg": "sign match fail or timestamp is not "
                                                          "within one hour from current time"})
        if document.get("msg_type") != "text" or "text" not in document.get("content", {}):
            return self.reply(400, {"code": 9499, "msg": "Bad Request", "data": {}})
        replies = {"ok": (200, {"code": 0, "msg": "success", "data": {}}),
                   "busy": (200, {"code": 9499, "msg": "too many request"}),
                   "limited": (400, {"code": 11232, "msg": "frequency limited"}),
                   "bad": (400, {"code": 9499, "msg": "Bad Request"})}
        self.reply(*replies[scenario])

    def reply(self, status: int, document: dict, headers: dict | None = None) -> None:
        data = json.dumps(document).encode()
        try:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout test)
            pass


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[Recorded] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def handle_error(self, request, client_address):  # client timeouts are expected
        pass


@pytest.fixture
def server() -> Iterator[FakeServer]:
    httpd = FakeServer()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def message(**extra) -> Message:
    fields = dict(channel="ops", recipient="ops-team", subject="报修单 BX-2026-000123 即将超时",
                  body="剩余4小时。", idempotency_key="case:BX-2026-000123:warn:1",
                  data={"event": "warning", "case": "BX-2026-000123",
                        "due_at": datetime(2026, 3, 5, 9, 0, tzinfo=timezone.utc)})
    fields.update(extra)
    return Message(**fields)


def failure(notifier, msg: Message | None = None) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        notifier.send(msg or message())
    notifier.close()
    return info.value


# -- generic webhook ------------------------------------------------------------------------
def test_webhook_posts_json_with_verifiable_signature_and_idempotency_key(server):
    hook = WebhookNotifier("ops", url=server.url("/hook"), secret="whsec", headers={"X-Team": "cs"})
    receipt = hook.send(message())
    hook.close()
    assert receipt.channel == "ops" and receipt.detail == "HTTP 200"
    request = server.requests[0]
    assert request.headers["Idempotency-Key"] == "case:BX-2026-000123:warn:1"
    assert request.headers["X-Team"] == "cs"
    assert request.headers["X-Estateflow-Timestamp"].isdigit()
    assert verify_signature("whsec", request.body, request.headers["X-Estateflow-Signature"])
    assert not verify_signature("other", request.body, request.headers["X-Estateflow-Signature"])
    signature = request.headers["X-Estateflow-Signature"]
    assert not verify_signature("whsec", request.body + b" ", signature)
    assert not verify_signature("whsec", request.body, None)
    assert not verify_signature("whsec", request.body, "sha256=zz")
    document = request.json()
    assert document["id"] == "case:BX-2026-000123:warn:1"
    assert document["event"] == "warning"
    assert document["subject"] == "报修单 BX-2026-000123 即将超时"
    assert document["data"] == {"event": "warning", "case": "BX-2026-000123",
                                "due_at": "2026-03-05T09:00:00+00:00"}
    assert datetime.fromisoformat(document["sent_at"]).tzinfo is not None
    assert "报修单".encode() in request.body  # UTF-8, not \\u escapes


def test_webhook_without_secret_sends_no_signature(server):
    hook = WebhookNotifier("ops", url=server.url("/hook"))
    hook.send(message())
    hook.close()
    assert "X-Estateflow-Signature" not in server.requests[0].headers
    assert server.requests[0].headers["Idempotency-Key"]


@pytest.mark.parametrize("path, retryable", [("/500", True), ("/400", False), ("/404", False),
                                             ("/302", False)])
def test_webhook_status_codes_are_classified(server, path, retryable):
    error = failure(WebhookNotifier("ops", url=server.url(path)))
    assert error.retryable is retryable
    assert error.channel == "ops"


def test_webhook_429_and_503_honour_retry_after(server):
    for path in ("/429", "/503"):
        error = failure(WebhookNotifier("ops", url=server.url(path)))
        assert error.retryable is True
        assert error.retry_after == 120


def test_webhook_timeout_is_retryable(server):
    started = time.monotonic()
    error = failure(WebhookNotifier("ops", url=server.url("/slow"), timeout=0.5))
    assert error.retryable is True
    assert "timed out" in error.reason
    assert time.monotonic() - started < 1.4


def test_webhook_connection_refused_is_retryable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = failure(WebhookNotifier("ops", url=f"http://127.0.0.1:{port}/hook", timeout=2))
    assert error.retryable is True


def test_webhook_data_that_is_not_json_is_not_retryable(server):
    error = failure(WebhookNotifier("ops", url=server.url("/hook")), message(data={"x": object()}))
    assert error.retryable is False
    assert server.requests == []


# -- DingTalk -------------------------------------------------------------------------------
def dingtalk(server, token: str, **extra) -> DingTalkNotifier:
    url = server.url(f"/dingtalk/robot/send?access_token={token}")
    return DingTalkNotifier("dingtalk_cs", url=url, secret=DING_SECRET, **extra)


def test_dingtalk_signs_query_and_keeps_access_token(server):
    robot = dingtalk(server, "ok")
    assert robot.rate_limit == RateLimit(20, 60)
    robot.send(message(recipient="13812341234"))
    robot.close()
    request = server.requests[0]
    assert request.query["access_token"] == "ok"
    assert request.query["sign"] == _ding_expected(request.query["timestamp"])
    document = request.json()
    assert document["msgtype"] == "text"
    assert document["text"]["content"].startswith("报修单 BX-2026-000123 即将超时\n剩余4小时。")
    assert document["at"] == {"atMobiles": ["13812341234"], "isAtAll": False}


def test_dingtalk_markdown_body(server):
    robot = dingtalk(server, "ok", msgtype="markdown")
    robot.send(message())
    robot.close()
    document = server.requests[0].json()
    assert document["msgtype"] == "markdown"
    assert document["markdown"]["title"] == "报修单 BX-2026-000123 即将超时"


def test_dingtalk_send_too_fast_is_retryable_after_ten_minutes(server):
    error = failure(dingtalk(server, "fast"))
    assert error.retryable is True
    assert error.retry_after == 600
    assert "130101" in error.reason


def test_dingtalk_keyword_mismatch_is_not_retryable(server):
    error = failure(dingtalk(server, "keyword"))
    assert error.retryable is False
    assert "310000" in error.reason


def test_dingtalk_wrong_secret_is_not_retryable(server):
    robot = DingTalkNotifier("dingtalk_cs", secret="SECwrong",
                             url=server.url("/dingtalk/robot/send?access_token=ok"))
    error = failure(robot)
    assert error.retryable is False and "sign not match" in error.reason


# -- WeCom ----------------------------------------------------------------------------------
def wecom(server, key: str, **extra) -> WeComNotifier:
    return WeComNotifier("wecom_ops", url=server.url(f"/wecom/cgi-bin/webhook/send?key={key}"),
                         **extra)


def test_wecom_ok_with_mentions(server):
    robot = wecom(server, "ok")
    assert robot.rate_limit == RateLimit(20, 60)
    robot.send(message(recipient="13812341234, all"))
    robot.close()
    text = server.requests[0].json()["text"]
    assert text["mentioned_mobile_list"] == ["13812341234", "@all"]


def test_wecom_text_is_cut_to_2048_bytes(server):
    robot = wecom(server, "ok")
    robot.send(message(body="超时" * 2000))
    robot.close()
    content = server.requests[0].json()["text"]["content"]
    assert len(content.encode()) <= 2048 and content.endswith("…")


def test_wecom_frequency_limit_is_retryable_after_a_minute(server):
    error = failure(wecom(server, "busy"))
    assert error.retryable is True and error.retry_after == 60


def test_wecom_invalid_webhook_is_not_retryable(server):
    error = failure(wecom(server, "gone"))
    assert error.retryable is False and "93000" in error.reason


# -- Feishu ---------------------------------------------------------------------------------
def feishu(server, scenario: str, secret: str = FEISHU_SECRET) -> FeishuNotifier:
    return FeishuNotifier("feishu_ops", url=server.url(f"/feishu/open-apis/bot/v2/hook/{scenario}"),
                          secret=secret)


def test_feishu_signs_body_and_sends_text(server):
    robot = feishu(server, "ok")
    robot.send(message())
    robot.close()
    document = server.requests[0].json()
    assert document["sign"] == _feishu_expected(document["timestamp"])
    assert document["content"]["text"].startswith("报修单 BX-2026-000123")


def test_feishu_9499_too_many_requests_is_retryable(server):
    error = failure(feishu(server, "busy"))
    assert error.retryable is True and error.retry_after == 60
    assert "9499" in error.reason


def test_feishu_11232_on_http_400_is_retryable(server):
    error = failure(feishu(server, "limited"))
    assert error.retryable is True and "11232" in error.reason


def test_feishu_9499_bad_request_is_not_retryable(server):
    error = failure(feishu(server, "bad"))
    assert error.retryable is False


def test_feishu_wrong_secret_is_not_retryable(server):
    error = failure(feishu(server, "ok", secret="wrong"))
    assert error.retryable is False and "19021" in error.reason


# -- SMS ------------------------------------------------------------------------------------
def test_sms_posts_template_and_params(server):
    sms = create_notifier("sms", "sms", {"url": server.url("/sms/send"), "sign_name": "某某物业"})
    receipt = sms.send(message(recipient="+86 13812341234", sms_template="SMS_123",
                               sms_params={"case": "BX-2026-000123"}))
    sms.close()
    assert receipt.provider_id == "sms-1"
    request = server.requests[0]
    assert request.json() == {"phone": "13812341234", "sign_name": "某某物业",
                              "template_code": "SMS_123", "params": {"case": "BX-2026-000123"}}
    assert request.headers["Idempotency-Key"] == "case:BX-2026-000123:warn:1"


def test_sms_without_template_is_refused_and_not_retryable(server):
    error = failure(SmsNotifier("sms", url=server.url("/sms/send"), sign_name="某某物业"),
                    message(recipient="13812341234"))
    assert error.retryable is False and "sms_template" in error.reason
    assert server.requests == []


def test_sms_to_a_non_mainland_number_is_not_retryable(server):
    error = failure(SmsNotifier("sms", url=server.url("/sms/send"), sign_name="某某物业"),
                    message(recipient="12345", sms_template="SMS_123"))
    assert error.retryable is False
