"""Fixtures of the hardening suite: bad input, tokens, security settings.

Property-based tests here share the hypothesis profile "hardening": a modest
number of examples and no per-example deadline (the first example of a test
pays for PostgreSQL and template warm-up), so the whole suite stays fast. Each
test applies it with ``@settings(parent=settings.get_profile("hardening"))``
(see ``strategies.HARDENING``), so loading this directory never changes the
hypothesis settings of the rest of the suite.
"""

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "hardening",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Admin logins are part of these tests; the production hasher costs 0.3 s per try."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fast_sources(settings):
    """No arXiv pause and no backoff sleeps."""
    settings.ARXIV_MIN_INTERVAL_SECONDS = 0
    settings.HTTP_BACKOFF_SECONDS = 0
    settings.HTTP_MAX_RETRY_AFTER_SECONDS = 1
