"""Fixtures for the subscription tests."""

import pytest

from tests.factories import SubscriberFactory


@pytest.fixture
def subscriber(db):
    return SubscriberFactory(email="ada@example.org")


@pytest.fixture
def pending(db):
    return SubscriberFactory(email="pending@example.org", status="pending", confirmed_at=None)
