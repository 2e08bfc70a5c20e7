"""Mailgun tracking webhook payloads, signed the way Mailgun signs them.

Mailgun posts JSON ``{"signature": {...}, "event-data": {...}}``; the
signature is the HMAC-SHA256 of ``timestamp + token`` with the webhook
signing key. Message ids in event data come without angle brackets.
"""

import hashlib
import hmac
import secrets
import time


def signature_block(signing_key, timestamp=None, token=None):
    timestamp = str(int(timestamp or time.time()))
    token = token or secrets.token_hex(25)
    digest = hmac.new(signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": digest}


def message_block(recipient, message_id, subject="Paperboy digest"):
    return {
        "headers": {
            "to": recipient,
            "message-id": message_id.strip("<>"),
            "from": "Paperboy <digest@mg.example.org>",
            "subject": subject,
        },
        "attachments": [],
        "size": 14210,
    }


def event(signing_key, event_type, recipient, message_id, **fields):
    """A complete webhook body for one event (``failed``, ``complained``, ``unsubscribed``, …)."""
    now = time.time()
    data = {
        "id": secrets.token_urlsafe(16),
        "timestamp": now,
        "log-level": "error" if event_type in ("failed", "complained") else "info",
        "event": event_type,
        "recipient": recipient,
        "recipient-domain": recipient.split("@")[-1],
        "message": message_block(recipient, message_id),
        "tags": [],
        "user-variables": {},
        "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False, "is-test-mode": False},
        **fields,
    }
    return {"signature": signature_block(signing_key, timestamp=now), "event-data": data}


def permanent_bounce(signing_key, recipient, message_id):
    return event(
        signing_key, "failed", recipient, message_id,
        severity="permanent", reason="bounce",
        **{"delivery-status": {
            "code": 550, "attempt-no": 1, "session-seconds": 0.4,
            "message": "5.1.1 The email account that you tried to reach does not exist.",
            "description": "Not delivering to previously bounced address",
            "enhanced-code": "5.1.1", "mx-host": "mx.example.net",
        }},
    )


def temporary_failure(signing_key, recipient, message_id):
    return event(
        signing_key, "failed", recipient, message_id,
        severity="temporary", reason="generic",
        **{"delivery-status": {
            "code": 452, "attempt-no": 1, "session-seconds": 0.2,
            "message": "4.2.2 The email account that you tried to reach is over quota.",
            "description": "", "retry-seconds": 600,
        }},
    )


SUPPRESSION_LISTS = {  # reason: Mailgun's code and description for a message to an address on the list
    "suppress-bounce": (605, "Not delivering to previously bounced address"),
    "suppress-unsubscribe": (606, "Not delivering to unsubscribed address"),
    "suppress-complaint": (607, "Not delivering to a user who marked your messages as spam"),
}


def dropped_for_suppression_list(signing_key, recipient, message_id, reason):
    """The permanent failure Mailgun reports instead of sending to an address on one of its lists."""
    code, description = SUPPRESSION_LISTS[reason]
    return event(
        signing_key, "failed", recipient, message_id,
        severity="permanent", reason=reason,
        **{"delivery-status": {
            "code": code, "attempt-no": 1, "session-seconds": 0.0, "message": "", "description": description,
        }},
    )


def complaint(signing_key, recipient, message_id):
    return event(signing_key, "complained", recipient, message_id)


def unsubscribe(signing_key, recipient, message_id):
    return event(
        signing_key, "unsubscribed", recipient, message_id,
        **{"client-info": {"client-type": "browser", "user-agent": "Mozilla/5.0"}, "ip": "203.0.113.7"},
    )


def delivered(signing_key, recipient, message_id):
    return event(
        signing_key, "delivered", recipient, message_id,
        **{"delivery-status": {"code": 250, "message": "OK", "description": "", "attempt-no": 1}},
    )
