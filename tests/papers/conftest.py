"""Fixtures of the papers suite: recorded responses and a quiet, fast HTTP policy."""

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixture_path():
    def path(*parts):
        return FIXTURES.joinpath(*parts)

    return path


@pytest.fixture
def fixture_bytes(fixture_path):
    def read(*parts):
        return fixture_path(*parts).read_bytes()

    return read


@pytest.fixture(autouse=True)
def _fast_sources(settings):
    """No 3-second arXiv pause and no backoff sleeps in tests."""
    settings.ARXIV_MIN_INTERVAL_SECONDS = 0
    settings.HTTP_BACKOFF_SECONDS = 0
    settings.HTTP_MAX_RETRY_AFTER_SECONDS = 1
