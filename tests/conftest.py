"""Shared test setup: the suite runs against the real PostgreSQL (and Redis where a test needs it)."""

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.factories import STAFF_PERMISSIONS, UserFactory

# The in-process API app, its schema and a world of rows to call it about (tests/api_world.py).
pytest_plugins = ["tests.api_world"]


def pytest_configure(config):
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        raise pytest.UsageError(
            "The tests run on PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/rewardlab "
            f"(got {engine}). `make test` sets it for you."
        )


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness is for attackers, not for a test suite that creates many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def annotator(db):
    return UserFactory()


@pytest.fixture
def staff(db):
    """A staff member holding every permission the API and the staff pages ask for (not a superuser)."""
    return UserFactory(is_staff=True, permissions=STAFF_PERMISSIONS)


@pytest.fixture
def admin_client_logged_in(client):
    """A client signed in as a superuser, for the admin's own pages."""
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def annotator_client(annotator):
    client = APIClient()
    client.force_authenticate(annotator)
    return client


@pytest.fixture
def staff_client(staff):
    client = APIClient()
    client.force_authenticate(staff)
    return client


@pytest.fixture
def media(settings, tmp_path):
    """A media root of this test's own, where uploads, exports and snapshots are written."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def roots(settings, tmp_path):
    """Model directories and media of this test's own (a worker started by the test inherits them)."""
    settings.MODEL_ROOT = tmp_path / "models"
    settings.MEDIA_ROOT = tmp_path / "media"
    return tmp_path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A tiny randomly initialised base model on disk, built once for the session (tests only read it)."""
    from tests.training_setup import tiny_base_model_save

    return tiny_base_model_save(tmp_path_factory.mktemp("tiny-base"))


def files_under(root) -> list[str]:
    """The files below a folder, as sorted relative paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _database_url_for_children() -> str:
    """The URL of the database this test uses (the test database), for child processes."""
    from django.db import connection

    params = connection.settings_dict
    user = params.get("USER") or "postgres"
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{params['NAME']}"


def child_process_env(**overrides: str) -> dict[str, str]:
    """Environment for a server, worker or command started by a test: same settings, the test database."""
    import os

    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "rewardlab.settings",
            "DATABASE_URL": _database_url_for_children(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "DEBUG": "1",
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "MODEL_ROOT": str(settings.MODEL_ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


class LiveWorker:
    """A real `celery worker` process consuming the given queues."""

    def __init__(self, process, hostname: str, log_path):
        self.process = process
        self.hostname = hostname
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        import signal
        import subprocess

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def live_celery_worker(transactional_db, tmp_path):
    """Start real Celery worker processes on the test database and the real broker.

    Call it: `worker = live_celery_worker(queues="default")`; each is stopped after the test.
    The broker must be Redis (CELERY_BROKER_URL); queues are purged first so no stale task runs.
    """
    import subprocess
    import sys
    import time
    import uuid

    from rewardlab.celery import app

    if not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.fail("live_celery_worker needs CELERY_BROKER_URL=redis://...; `make test` sets it.")
    started: list[LiveWorker] = []

    def start(
        queues: str = "default", concurrency: int = 1, extra_args: tuple[str, ...] = (), **env
    ) -> LiveWorker:
        with app.connection_for_write() as connection:
            for queue in queues.split(","):
                connection.default_channel.queue_purge(queue)
        hostname = f"test-{uuid.uuid4().hex[:8]}@localhost"
        log_path = tmp_path / f"worker-{hostname.split('@')[0]}.log"
        command = [
            sys.executable, "-m", "celery", "-A", "rewardlab", "worker",
            "--queues", queues, "--concurrency", str(concurrency), "--hostname", hostname,
            "--loglevel", "info", "--without-gossip", "--without-mingle", *extra_args,
        ]  # fmt: skip
        log_file = log_path.open("w")
        process = subprocess.Popen(
            command,
            env=child_process_env(**env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = LiveWorker(process, hostname, log_path)
        started.append(worker)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"Celery worker exited with {process.returncode}:\n{worker.log()}")
            if app.control.ping(destination=[hostname], timeout=1.0):
                return worker
        pytest.fail(f"Celery worker did not answer a ping within 90 s:\n{worker.log()}")

    yield start
    for worker in started:
        worker.stop()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def browser(monkeypatch):
    """A headless Debian Chromium driven by Playwright; CI fails rather than skips when it is missing."""
    import os
    import shutil

    from django.db import connections

    if not shutil.which(CHROMIUM):
        message = f"{CHROMIUM} is missing: apt-get install -y chromium (`make test` does it as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the ORM calls the test makes
    # between browser steps are ordinary blocking calls, which Django would otherwise refuse.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
        # Connections the test opened while Playwright's loop ran are not the ones pytest-django closes at
        # the end of the session; left open, they stop it from dropping the test database.
        connections.close_all()


@pytest.fixture
def broker_down():
    """Point this process's Celery app at a port where no broker listens (the shared Redis keeps running)."""
    from rewardlab.celery import app

    def reconnect(url):
        # CELERY_BROKER_URL in the environment wins over conf.broker_url; publishing uses the write URL.
        app.conf.broker_write_url = url
        # Drop cached connection and producer pools so that the next publish dials the new URL.
        app._pool = None
        app.amqp._producer_pool = None

    reconnect("redis://127.0.0.1:6390/0")
    yield
    reconnect(None)
