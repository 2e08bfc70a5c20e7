"""Fixtures for the subscription tests."""

import pytest

from subscriptions import services

from tests.factories import SubscriberFactory


@pytest.fixture
def subscriber(db):
    return SubscriberFactory(email="ada@example.org")


@pytest.fixture
def pending(db):
    return SubscriberFactory(email="pending@example.org", status="pending", confirmed_at=None)


@pytest.fixture
def mail_system(monkeypatch):
    """``services.send_email`` failing with the errors in ``mail_system.errors``, one per call
    while there are any (then sending for real); ``mail_system.tries`` counts the calls."""
    real_send = services.send_email

    class MailSystem:
        errors, tries = [], 0

        def send(self, *args, **kwargs):
            self.tries += 1
            if self.errors:
                raise self.errors.pop(0)
            return real_send(*args, **kwargs)

    system = MailSystem()
    monkeypatch.setattr(services, "send_email", system.send)
    return system
