"""Production settings are safe, and misconfiguration fails with a message that says what to set."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if key not in {"DEBUG", "SECRET_KEY"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True
    )


def test_check_deploy_is_clean_with_production_settings():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY="k3y-" + "x9Qz!" * 12,
        ALLOWED_HOSTS="rank.example.org",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_missing_secret_key_in_production_names_the_variable():
    result = _manage("check", DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_a_malformed_boolean_names_the_variable():
    result = _manage("check", DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_manage_py_runs_in_development_mode_when_nothing_is_set():
    result = _manage("check")
    assert result.returncode == 0, result.stderr


def _setting(name: str, **env: str) -> str:
    result = _manage("shell", "-c", f"from django.conf import settings; print(settings.{name})", **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_password_reset_is_on_only_where_mail_is_configured():
    unset = {"EMAIL_HOST": "", "EMAIL_BACKEND": ""}
    assert _setting("PASSWORD_RESET_ENABLED", **unset) == "False"
    assert _setting("PASSWORD_RESET_ENABLED", **{**unset, "EMAIL_HOST": "smtp.example.org"}) == "True"
    console = "django.core.mail.backends.console.EmailBackend"
    assert _setting("PASSWORD_RESET_ENABLED", **{**unset, "EMAIL_BACKEND": console}) == "True"


def test_login_throttling_reads_its_limits_from_the_environment():
    assert _setting("AXES_FAILURE_LIMIT") == "5"
    assert _setting("AXES_FAILURE_LIMIT", LOGIN_FAILURE_LIMIT="3") == "3"
    assert _setting("AXES_COOLOFF_TIME", LOGIN_LOCKOUT_MINUTES="30") == "0:30:00"
