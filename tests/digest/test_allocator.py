"""A sending process's C allocator keeps the memory a batch frees (``digest.allocator``)."""

import platform

import pytest

from digest import allocator, sending
from digest.sending import send_edition_to
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")


@pytest.fixture
def fresh_answer():
    allocator.keep_freed_memory.cache_clear()
    yield
    allocator.keep_freed_memory.cache_clear()


@glibc_only
def test_glibc_takes_the_raised_thresholds(fresh_answer):
    assert allocator.keep_freed_memory() is True


def test_without_glibcs_mallopt_nothing_is_changed(fresh_answer, monkeypatch):
    class NoMallopt:  # musl, macOS: a C library without it
        def __init__(self, name):
            pass

    monkeypatch.setattr(allocator.ctypes, "CDLL", NoMallopt)

    assert allocator.keep_freed_memory() is False


@pytest.mark.django_db
def test_sending_a_chunk_raises_the_thresholds(monkeypatch, mailoutbox):
    calls = []
    monkeypatch.setattr(sending, "keep_freed_memory", lambda: calls.append("raised"))

    send_edition_to(built_edition(), [SubscriberFactory(interests="").pk])

    assert calls == ["raised"] and len(mailoutbox) == 1
