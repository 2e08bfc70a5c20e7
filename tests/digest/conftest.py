"""Fixtures shared by the batch-sending tests (``test_batch_sending.py``, ``test_calls.py``)."""

import pytest
from django.core import mail

from tests.factories import SubscriberFactory

INTERESTS = ["diffusion models", "graph neural networks", "robot manipulation", "language models", ""]


@pytest.fixture
def batch_outbox(settings):
    """anymail's test backend as a batching ESP, two recipients a call; ``mail.outbox`` holds each call."""
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    settings.DIGEST_ESP_BATCH_LIMIT = 2
    mail.outbox = []
    return mail.outbox


@pytest.fixture
def readers():
    """Five readers with different interests (one with none), in the order batches follow."""
    return [SubscriberFactory(interests=interests) for interests in INTERESTS]
