"""Notification channels: log, e-mail, webhook, DingTalk/WeCom/Feishu robots, SMS, Apprise.

The outbox calls ``notifier.send(message)`` once per attempt; a notifier raises only
:class:`~estateflow.DeliveryError` with ``retryable`` (and ``retry_after`` seconds, possibly
``None``) so that the outbox can decide between a retry with backoff and the dead-letter state.
Channels are configured in ``estateflow.yaml`` (:func:`load_config`) or built in code
(:func:`create_notifier`); third-party kinds come from the entry-point group
``estateflow.notifiers``.
"""

from ._apprise import AppriseNotifier
from ._base import Message, Notifier, RateLimit, Receipt, message_id_for
from ._config import ChannelConfig, NotifierConfig, load_config, parse_config
from ._email import EmailNotifier
from ._log import LogNotifier, mask_personal
from ._registry import ENTRY_POINT_GROUP, create_notifier, known_kinds, register_kind
from ._robots import DingTalkNotifier, FeishuNotifier, WeComNotifier, dingtalk_sign, feishu_sign
from ._sms import SmsNotifier
from ._webhook import WebhookNotifier, sign_body, verify_signature

__all__ = [
    "AppriseNotifier",
    "ChannelConfig",
    "DingTalkNotifier",
    "ENTRY_POINT_GROUP",
    "EmailNotifier",
    "FeishuNotifier",
    "LogNotifier",
    "Message",
    "Notifier",
    "NotifierConfig",
    "RateLimit",
    "Receipt",
    "SmsNotifier",
    "WeComNotifier",
    "WebhookNotifier",
    "create_notifier",
    "dingtalk_sign",
    "feishu_sign",
    "known_kinds",
    "load_config",
    "mask_personal",
    "message_id_for",
    "parse_config",
    "register_kind",
    "sign_body",
    "verify_signature",
]
