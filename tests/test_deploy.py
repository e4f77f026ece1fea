"""docker-compose.yml is valid, and every command it runs works natively here (no Docker engine in CI)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import child_process_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]
needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None and not os.environ.get("CI"),
    reason="docker-compose is not installed (apt-get install docker-compose; `make test` does it)",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _compose_config(web_port: int) -> dict:
    """The compose file as docker-compose itself resolves it, with variables interpolated."""
    env = {**os.environ, "SECRET_KEY": "compose-config-test", "WEB_PORT": str(web_port)}
    output = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return yaml.safe_load(output)


def _native(command: list[str]) -> list[str]:
    """Run the image's executables from this virtualenv."""
    bin_dir = Path(sys.executable).parent
    if command[0] == "python":
        return [sys.executable, *command[1:]]
    return [str(bin_dir / command[0]), *command[1:]]


def _production_env(**extra: str) -> dict[str, str]:
    return child_process_env(
        DEBUG="0",
        SECRET_KEY="a-long-random-secret-key-for-the-deploy-test-0123456789-abcdef",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",
        **extra,
    )


def _wait_for(predicate, process: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args} exited with {process.returncode}:\n{log.read_text()}")
        if predicate():
            return
        time.sleep(0.3)
    pytest.fail(f"{process.args} did not become ready:\n{log.read_text()}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@needs_compose
def test_compose_file_is_valid():
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        env={**os.environ, "SECRET_KEY": "compose-config-test"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@needs_compose
def test_compose_training_worker_reserves_a_gpu():
    config = _compose_config(_free_port())
    devices = config["services"]["training"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "--concurrency" in config["services"]["training"]["command"]


@needs_compose
def test_compose_commands_run_natively(transactional_db, tmp_path):
    from rewardlab.celery import app

    port = _free_port()
    services = _compose_config(port)["services"]

    migrate = subprocess.run(
        _native(services["migrate"]["command"]), env=_production_env(), capture_output=True, text=True
    )
    assert migrate.returncode == 0, migrate.stderr

    started: list[subprocess.Popen] = []
    try:
        logs = {}
        for name in ("web", "worker", "training", "beat"):
            logs[name] = tmp_path / f"{name}.log"
            started.append(
                subprocess.Popen(
                    _native(services[name]["command"]),
                    env=_production_env(),
                    stdout=logs[name].open("w"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=ROOT,
                )
            )
        web, worker, training, beat = started

        def web_is_healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        _wait_for(web_is_healthy, web, logs["web"])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/schema/", timeout=5) as response:
            assert b"openapi" in response.read()

        host = socket.gethostname()
        for process, service, queue in ((worker, "worker", "default"), (training, "training", "training")):
            name = f"{queue}@{host}"
            _wait_for(
                lambda name=name: bool(app.control.ping(destination=[name], timeout=1)),
                process,
                logs[service],
            )
        # The compose healthcheck of the worker is a shell command: run it as the container would.
        healthcheck = services["worker"]["healthcheck"]["test"][1].replace("$$", "$")
        bin_dir = str(Path(sys.executable).parent)
        check = subprocess.run(
            ["sh", "-c", healthcheck],
            env=_production_env(HOSTNAME=host, PATH=f"{bin_dir}:{os.environ['PATH']}"),
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert check.returncode == 0, check.stdout + check.stderr

        _wait_for(lambda: "beat: Starting" in logs["beat"].read_text(), beat, logs["beat"])
    finally:
        for process in started:
            _stop(process)


@pytest.mark.parametrize("environment, seconds", [({}, 600), ({"WEB_TIMEOUT": "1800"}, 1800)])
def test_gunicorn_lets_a_long_download_run_past_its_own_30_second_default(environment, seconds):
    # A sync worker is killed, and the download it streams cut short, once a request outlives `timeout`.
    printed = subprocess.run(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            "python:rewardlab.gunicorn_conf",
            "--print-config",
            "rewardlab.wsgi",
        ],
        env=child_process_env(DEBUG="1", **environment),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert printed.returncode == 0, printed.stderr
    settings = dict(map(str.strip, line.split("=", 1)) for line in printed.stdout.splitlines() if "=" in line)
    assert int(settings["timeout"]) == seconds


def test_every_way_of_starting_the_web_process_uses_the_gunicorn_settings():
    procfile_web = next(
        line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:")
    )
    dockerfile_cmd = next(
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")
    )
    compose_web = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]["command"]

    assert "gunicorn -c python:rewardlab.gunicorn_conf rewardlab.wsgi" in procfile_web
    assert '"gunicorn", "-c", "python:rewardlab.gunicorn_conf", "rewardlab.wsgi"' in dockerfile_cmd
    assert compose_web[:4] == ["gunicorn", "-c", "python:rewardlab.gunicorn_conf", "rewardlab.wsgi"]


def _pins(lock: Path) -> dict[str, str]:
    """NAME -> VERSION of each `name==version` line of a lock file written by `make lock`."""
    from packaging.utils import canonicalize_name

    pins = {}
    for line in lock.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_lock_files_pin_every_requirement_within_pyproject_ranges():
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, dev = _pins(ROOT / "requirements/lock.txt"), _pins(ROOT / "requirements/dev.lock.txt")
    for lock, requirements in (
        (runtime, project["dependencies"]),
        (dev, project["dependencies"] + project["optional-dependencies"]["dev"]),
    ):
        for requirement in map(Requirement, requirements):
            name = canonicalize_name(requirement.name)
            assert name in lock, f"{name} is not locked: run `make lock`"
            assert requirement.specifier.contains(lock[name], prereleases=True), (name, lock[name])
    # The image's versions are the ones the suite runs with.
    assert {name: dev.get(name) for name in runtime} == runtime


def test_torch_is_locked_as_a_release_that_the_cuda_build_satisfies_too():
    pin = f"torch=={_pins(ROOT / 'requirements/lock.txt')['torch']}"
    assert "+" not in pin, "make lock writes torch without its +cpu label"
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    assert f"ARG TORCH_SPEC={pin}" in dockerfile


def test_the_suite_runs_with_the_locked_versions():
    from importlib.metadata import PackageNotFoundError, version

    locked = _pins(ROOT / "requirements/dev.lock.txt")
    installed = {}
    for name in locked:
        try:
            installed[name] = version(name)
        except PackageNotFoundError:
            installed[name] = None
    # torch is whichever build TORCH_SPEC chose: the locked release's CPU build here, GPU hosts their own.
    del locked["torch"]
    differences = {name: (installed[name], pin) for name, pin in locked.items() if installed[name] != pin}
    assert differences == {}, "the virtualenv is not the lock (installed, locked): run `make install`"
