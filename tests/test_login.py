"""Signing in: wrong passwords are throttled per username and address; password reset only with mail."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core import mail
from django.test import Client
from django.utils import timezone

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
LOGIN = "/accounts/login/"


def _sign_in(client, user, password, address="10.0.0.1", url=LOGIN):
    return client.post(url, {"username": user.username, "password": password}, REMOTE_ADDR=address)


def test_five_wrong_passwords_lock_the_account_from_that_address_even_for_the_right_one(settings):
    user = UserFactory()
    client = Client()

    wrong = [_sign_in(client, user, f"guess {n}").status_code for n in range(settings.AXES_FAILURE_LIMIT)]
    right = _sign_in(client, user, PASSWORD)

    assert wrong[:-1] == [200] * (settings.AXES_FAILURE_LIMIT - 1)  # the form again, with its error
    assert wrong[-1] == 429
    assert right.status_code == 429
    page = right.content.decode()
    assert "Too many sign-in attempts" in page and "locked for 15 minutes" in page
    assert "_auth_user_id" not in client.session


def test_the_lockout_is_for_that_username_and_address_only(settings):
    user, other = UserFactory(), UserFactory()
    for n in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(Client(), user, f"guess {n}")

    assert _sign_in(Client(), other, PASSWORD).status_code == 302  # another account, same address
    assert _sign_in(Client(), user, PASSWORD, address="10.0.0.2").status_code == 302  # another address


def test_behind_trusted_proxies_the_lockout_is_per_client_address_and_the_client_cannot_choose_it(settings):
    user = UserFactory()
    proxy = "172.18.0.5"  # what the web process sees behind one proxy: every client alike

    def through_the_proxy(client_address, password, forwarded_before=""):
        forwarded = f"{forwarded_before}, {client_address}" if forwarded_before else client_address
        return Client().post(
            LOGIN,
            {"username": user.username, "password": password},
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=forwarded,
        )

    settings.TRUSTED_PROXY_COUNT = 1
    for n in range(settings.AXES_FAILURE_LIMIT):
        # The attacker also writes addresses of their own to the left: they are not taken.
        through_the_proxy("203.0.113.9", f"guess {n}", forwarded_before=f"198.51.100.{n}")

    assert through_the_proxy("203.0.113.9", PASSWORD).status_code == 429
    assert through_the_proxy("203.0.113.9", PASSWORD, forwarded_before="198.51.100.77").status_code == 429
    assert through_the_proxy("192.0.2.44", PASSWORD).status_code == 302  # the real user elsewhere
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.9"}

    # Without the setting the header is not trusted: everyone behind the proxy is the proxy.
    settings.TRUSTED_PROXY_COUNT = 0
    assert through_the_proxy("192.0.2.45", "wrong").status_code == 200
    assert AccessAttempt.objects.filter(ip_address=proxy).exists()


def test_the_lockout_ends_after_its_time(settings):
    user = UserFactory()
    for n in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(Client(), user, f"guess {n}")
    assert _sign_in(Client(), user, PASSWORD).status_code == 429

    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))

    assert _sign_in(Client(), user, PASSWORD).status_code == 302


def test_a_successful_sign_in_clears_the_count(settings):
    user = UserFactory()
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        _sign_in(Client(), user, f"guess {n}")
    assert _sign_in(Client(), user, PASSWORD).status_code == 302

    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        _sign_in(Client(), user, f"again {n}")

    assert _sign_in(Client(), user, PASSWORD).status_code == 302


def test_the_admin_sign_in_is_throttled_too(settings):
    admin = UserFactory(is_staff=True, is_superuser=True)
    for n in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(Client(), admin, f"guess {n}", url="/admin/login/")

    assert _sign_in(Client(), admin, PASSWORD, url="/admin/login/").status_code == 429


RESET_PAGES = ["/accounts/password_reset/", "/accounts/password_reset/done/", "/accounts/reset/done/"]


def test_without_mail_there_is_no_password_reset(client, settings):
    assert settings.PASSWORD_RESET_ENABLED is False  # the test environment configures no mail server
    user = UserFactory()

    for url in RESET_PAGES:
        assert client.get(url).status_code == 404, url
    assert client.post(RESET_PAGES[0], {"email": user.email}).status_code == 404
    assert mail.outbox == []


def test_with_mail_configured_password_reset_sends_the_link(client, settings):
    settings.PASSWORD_RESET_ENABLED = True
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    user = UserFactory()

    form = client.get(RESET_PAGES[0])
    sent = client.post(RESET_PAGES[0], {"email": user.email})

    assert form.status_code == 200
    assert sent.status_code == 302 and sent["Location"] == RESET_PAGES[1]
    assert [message.to for message in mail.outbox] == [[user.email]]
    assert "/accounts/reset/" in mail.outbox[0].body
