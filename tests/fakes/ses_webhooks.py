"""Amazon SES events as SNS posts them to anymail's tracking webhook.

SES publishes an event (``Bounce``, ``Rendering Failure``, ``Reject``…) as the ``Message`` of an
SNS notification, JSON in a JSON string; SNS names the notification's type in a header.
"""

import base64
import json

from django.test import Client

TRACKING_URL = "/anymail/amazon_ses/tracking/"


def ses_event(event_type, recipient, message_id, type_field="eventType", **details):
    """An SES event about one message to ``recipient``; ``details``: the event's own object
    (``bounce=…``, ``failure=…``, ``reject=…``). ``type_field``: ``eventType`` as a configuration
    set's event destination publishes it, ``notificationType`` as an identity's notifications do."""
    return {
        type_field: event_type,
        "mail": {"timestamp": "2026-11-20T07:14:58.000Z", "messageId": message_id, "destination": [recipient],
                 "headers": []},
        **details,
    }


def post_ses_event(event, sns_id, webhook_secret):
    """POST ``event`` in an SNS notification, with the webhook's basic auth."""
    notification = {
        "Type": "Notification", "MessageId": sns_id, "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses",
        "Message": json.dumps(event), "Timestamp": "2026-11-20T07:15:01.000Z", "SignatureVersion": "1",
    }
    auth = "Basic " + base64.b64encode(webhook_secret.encode()).decode()
    return Client().post(TRACKING_URL, data=json.dumps(notification), content_type="text/plain; charset=UTF-8",
                         HTTP_X_AMZ_SNS_MESSAGE_TYPE="Notification", HTTP_X_AMZ_SNS_MESSAGE_ID=sns_id,
                         HTTP_AUTHORIZATION=auth)
