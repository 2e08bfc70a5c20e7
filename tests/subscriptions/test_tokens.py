import os
import time

import pytest
from django.core import signing

from subscriptions.tokens import (
    CONFIRM,
    PREFERENCES,
    UNSUBSCRIBE,
    ExpiredToken,
    InvalidToken,
    UnknownSubscriber,
    b64_text,
    make_token,
    read_token,
)

pytestmark = pytest.mark.django_db


def test_a_token_names_its_subscriber(subscriber):
    assert read_token(make_token(subscriber, PREFERENCES), PREFERENCES).subscriber == subscriber


def test_a_tampered_token_is_refused(subscriber):
    token = make_token(subscriber, PREFERENCES)
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    with pytest.raises(InvalidToken):
        read_token(tampered, PREFERENCES)


def test_a_token_for_another_purpose_is_refused(subscriber):
    with pytest.raises(InvalidToken):
        read_token(make_token(subscriber, CONFIRM), UNSUBSCRIBE)


def test_a_confirmation_token_expires_after_seven_days(subscriber, time_machine):
    time_machine.move_to(time.time() - 8 * 24 * 3600)
    token = make_token(subscriber, CONFIRM)
    time_machine.move_to(time.time() + 8 * 24 * 3600)
    with pytest.raises(ExpiredToken):
        read_token(token, CONFIRM)


def test_rotating_the_secret_revokes_preferences_links_but_not_unsubscribe_links(subscriber):
    preferences = make_token(subscriber, PREFERENCES)
    unsubscribe = make_token(subscriber, UNSUBSCRIBE)
    subscriber.token_secret = "f" * 32
    subscriber.save()
    with pytest.raises(InvalidToken):
        read_token(preferences, PREFERENCES)
    with pytest.raises(InvalidToken):
        read_token(unsubscribe, UNSUBSCRIBE)
    assert read_token(unsubscribe, UNSUBSCRIBE, allow_revoked=True).subscriber == subscriber


def test_a_token_of_a_deleted_subscriber_says_so(subscriber):
    token = make_token(subscriber, UNSUBSCRIBE)
    subscriber.delete()
    with pytest.raises(UnknownSubscriber):
        read_token(token, UNSUBSCRIBE)


@pytest.mark.parametrize("garbage", ["", "x", "a:b:c", "…", "A" * 5000, None])
def test_garbage_is_an_invalid_token_not_a_crash(garbage):
    with pytest.raises(InvalidToken):
        read_token(garbage, PREFERENCES)


def test_b64_text_writes_what_signings_b64_encode_writes():
    samples = [bytes(range(256)), b"\xfb\xff\xfe" * 11] + [os.urandom(n) for n in range(70) for _ in range(5)]
    for data in samples:
        assert b64_text(data) == signing.b64_encode(data).decode()
