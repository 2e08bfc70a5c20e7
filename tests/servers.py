"""Throwaway PostgreSQL, PgBouncer and Redis servers for the test suite.

Each starts the real Debian program on a free loopback port in a temporary
directory and is torn down at the end of its tests. PostgreSQL and PgBouncer
refuse to run as root, so as root they run as the ``postgres`` system user.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from kombu import pools


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, timeout=30.0, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def as_postgres_user(cmd, workdir):
    """``cmd`` to run as the ``postgres`` system user, who is given ``workdir``, when the suite
    runs as root (PostgreSQL and PgBouncer refuse to run as root); else ``cmd`` unchanged."""
    if os.geteuid() != 0:
        return list(cmd)
    pw = pwd.getpwnam("postgres")
    os.chown(workdir, pw.pw_uid, pw.pw_gid)
    return ["runuser", "-u", "postgres", "--", *cmd]


def _pg_bin(name):
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(f"PostgreSQL's {name} not found: install the postgresql package")
    return candidates[-1]


class PostgresServer:
    user = "postgres"

    def __init__(self):
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="paperboy-pg-"))
        self.datadir = self.root / "data"

    def _run(self, *args, **kwargs):
        cmd = as_postgres_user(args, self.root)
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)

    def start(self):
        self._run(
            _pg_bin("initdb"), "-D", str(self.datadir), "-U", self.user,
            "--auth=trust", "--encoding=UTF8", "--no-sync", "-N",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.datadir), "-o", options,
            "-l", str(self.root / "server.log"), "-w", "-t", "60", "start",
        )
        wait_for_port(self.port)
        return self

    def url(self, dbname="paperboy"):
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, dbname):
        """An empty database of the cluster (the benchmarks' own); its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{dbname}"')
        return self.url(dbname)

    def stop(self):
        try:
            self._run(_pg_bin("pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def redis_cache(url):
    """Django's CACHES for a Redis server at ``url`` (one of ``RedisServer.url``'s, or a port nothing listens on)."""
    return {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}


class RedisServer:
    def __init__(self):
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="paperboy-redis-"))
        self.process = None

    def start(self):
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self.process)
        return self

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def restart(self):
        self.stop(keep_dir=True)
        self.process = None
        return self.start()

    def stop(self, keep_dir=False):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        forget_broker_connections(self.port)
        if not keep_dir:
            shutil.rmtree(self.root, ignore_errors=True)


def forget_broker_connections(port):
    """Drop the broker connections to ``port`` that kombu keeps in its process-wide pools, keyed
    by URL: after a restart of Redis the next Celery client of the same URL (a later test's, its
    database number reused) would take a closed one and fail with "Connection closed by server".
    The pools of other brokers (the app's own, in memory, under the eager tests) are left alone."""
    for group in (pools.producers, pools.connections):
        for key, pool in list(group.items()):
            connections = getattr(pool, "connections", pool)  # a producer pool holds a connection pool
            if connections.connection.port == port:
                group.pop(key).force_close_all(close_pool=False)


class PgBouncerServer:
    """PgBouncer in front of ``postgres``, pooling by transaction, its server connections
    handed out in turn (``server_round_robin``): two transactions of one client in a row run
    on two different server sessions, so anything that leans on session state from one
    transaction to the next (a held cursor, a session ``SET``, a prepared statement) fails
    at once instead of now and then under load."""

    def __init__(self, postgres, pool_size=2):
        self.postgres = postgres
        self.pool_size = pool_size
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="paperboy-pgbouncer-"))
        self.process = None

    def start(self):
        (self.root / "users.txt").write_text(f'"{self.postgres.user}" ""\n')
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.postgres.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.root / 'users.txt'}\n"
            f"pool_mode = transaction\ndefault_pool_size = {self.pool_size}\n"
            f"min_pool_size = {self.pool_size}\nserver_round_robin = 1\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
        )
        cmd = as_postgres_user([shutil.which("pgbouncer") or "/usr/sbin/pgbouncer", str(self.root / "pgbouncer.ini")],
                               self.root)
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, process=self.process)
        return self

    def url(self, dbname="paperboy"):
        return f"postgres://{self.postgres.user}@127.0.0.1:{self.port}/{dbname}"

    def fill_pool(self, dbname):
        """Hold ``pool_size`` transactions at once, so that every server connection to
        ``dbname`` is open and the turns between them begin with the next transaction."""
        clients = [psycopg.connect(self.url(dbname)) for _ in range(self.pool_size)]
        try:
            for client in clients:
                client.execute("SELECT 1")  # each holds a server connection until it commits
            for client in clients:
                client.commit()  # a transaction left open would make PgBouncer drop its server
        finally:
            for client in clients:
                client.close()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
