"""Suite-wide fixtures: the real PostgreSQL and Redis servers, and small builders.

Every database test runs on a throwaway PostgreSQL cluster started here
(set PAPERBOY_TEST_DB=sqlite for a quick local run on SQLite instead; CI never
does). Redis is started on demand by the tests that need it. Under pytest-xdist
(``make test``) each worker process starts its own cluster and Redis server.
"""

import os

import pytest

from tests.servers import PostgresServer, RedisServer

USE_SQLITE = os.environ.get("PAPERBOY_TEST_DB") == "sqlite"


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The cache outlives a single test: rate-limit counters and the dashboard's kept figures live there."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="session")
def postgres_server():
    if USE_SQLITE:
        pytest.skip("PAPERBOY_TEST_DB=sqlite: no PostgreSQL server for this run")
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(request, django_db_modify_db_settings_parallel_suffix):
    """Point the default database at the throwaway PostgreSQL cluster.

    The settings dict is updated in place because Django's connection handler
    holds a reference to it; the SQLite connection object made before is dropped.
    """
    if USE_SQLITE:
        return
    from django.conf import settings

    server = request.getfixturevalue("postgres_server")
    db = settings.DATABASES["default"]
    db.clear()
    db.update(
        {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "paperboy",
            "USER": server.user,
            "PASSWORD": "",
            "HOST": "127.0.0.1",
            "PORT": str(server.port),
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": False,
            "ATOMIC_REQUESTS": False,
            "AUTOCOMMIT": True,
            "OPTIONS": {},
            "TIME_ZONE": None,
            "TEST": {"NAME": "test_paperboy", "MIRROR": None, "CHARSET": None, "COLLATION": None, "MIGRATE": True, "TEMPLATE": None, "CREATE_DB": True, "CREATE_USER": True, "USER": None, "PASSWORD": None, "TBLSPACE": None, "TBLSPACE_TMP": None, "DEPENDENCIES": []},
        }
    )
    from django.db import connections

    del connections["default"]


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def test_database_url(postgres_server):
    """The URL of the test database, for subprocesses (workers, web servers)."""
    return postgres_server.url("test_paperboy")


@pytest.fixture(autouse=True)
def _isolated_outbox(settings, tmp_path):
    settings.OUTBOX_DIR = tmp_path / "outbox"


@pytest.fixture
def admin_client(admin_client):
    """pytest-django's, with every model's content type already cached, as in a process that
    has served an admin page before: a test that counts an admin page's queries then counts
    the same whichever tests ran before it in its process."""
    from django.apps import apps
    from django.contrib.contenttypes.models import ContentType

    ContentType.objects.get_for_models(*apps.get_models())
    return admin_client
