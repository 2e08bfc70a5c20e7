"""The subscribers of the end-to-end runs, and what each one must receive."""

from tests.factories import SubscriberFactory


def make_audience():
    """Return (readers due for a digest, subscribers who must get nothing)."""
    readers = [
        SubscriberFactory(interests="mixture of experts, routing", always_send_top=True),
        SubscriberFactory(interests=""),
        SubscriberFactory(interests="compilers", always_send_top=True),
        SubscriberFactory(interests="", frequency="weekly"),
        SubscriberFactory(interests="", timezone="Asia/Tokyo"),
        SubscriberFactory(interests="", timezone="America/Los_Angeles"),
    ]
    not_due = [
        SubscriberFactory(status="pending", confirmed_at=None),
        SubscriberFactory(status="paused"),
        SubscriberFactory(status="unsubscribed"),
        SubscriberFactory(status="bounced"),
        SubscriberFactory(status="complained"),
    ]
    return readers, not_due


def addresses(subscribers):
    return sorted(s.email.lower() for s in subscribers)
