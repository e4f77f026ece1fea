"""Shared test setup: the suite runs against the real PostgreSQL (and Redis where a test needs it)."""

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.factories import UserFactory


def pytest_configure(config):
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        raise pytest.UsageError(
            "The tests run on PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/rewardlab "
            f"(got {engine}). `make test` sets it for you."
        )


@pytest.fixture
def annotator(db):
    return UserFactory()


@pytest.fixture
def staff(db):
    return UserFactory(is_staff=True)


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
