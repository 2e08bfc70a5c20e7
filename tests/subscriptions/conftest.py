"""Fixtures for the subscription tests."""

import pytest
from django.core.cache import cache

from tests.factories import SubscriberFactory


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Rate-limit counters live in the cache, which outlives a single test."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def subscriber(db):
    return SubscriberFactory(email="ada@example.org")


@pytest.fixture
def pending(db):
    return SubscriberFactory(email="pending@example.org", status="pending", confirmed_at=None)
