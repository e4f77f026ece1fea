"""Run the training engine's command line in a child process group and read its progress as it goes.

No Django here: the service turns what this yields into rows. The engine runs in a new session (its own
process group) so that cancel can kill the whole tree, torchrun's workers included, and so that GPU memory
is returned to the system when the run ends, whatever the Celery worker does next.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ENGINE_MODULE = "training.reward_model"
_PR_SET_PDEATHSIG = 1


def engine_command(*, subcommand: str, arguments: Sequence[str], gpus: int = 0) -> list[str]:
    """The engine's command line; under torchrun with one process per GPU when more than one is configured."""
    if gpus > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(gpus), "-m"]
    else:
        launcher = [sys.executable, "-m"]
    return [*launcher, ENGINE_MODULE, subcommand, *arguments]


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL the engine when the worker that started it dies (SIGKILL, OOM killer)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class EngineOutput:
    """One thing the engine said: a JSON event from stdout, a log line, or a quiet tick."""

    kind: str  # "event" | "log" | "tick"
    event: dict[str, Any] = field(default_factory=dict)
    line: str = ""


class EngineProcess:
    """The engine running in its own process group, with its stdout events and stderr lines collected."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        log_lines: int = 200,
    ):
        self.command = list(command)
        self.cwd = cwd
        self.env = env
        self.log = deque(maxlen=log_lines)
        self.process: subprocess.Popen | None = None
        self._queue: queue.Queue = queue.Queue()

    @property
    def pid(self) -> int | None:
        """The child's pid, which is also its process group id."""
        return self.process.pid if self.process else None

    @property
    def returncode(self) -> int | None:
        """The exit status once it ended; negative is the signal that killed it."""
        return self.process.returncode if self.process else None

    def start(self) -> int:
        """Start the child in a new session and the threads that read its output."""
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
        )
        for stream, kind in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr")):
            threading.Thread(target=self._read, args=(stream, kind), daemon=True).start()
        return self.process.pid

    def _read(self, stream: IO[bytes], kind: str) -> None:
        # tqdm redraws with carriage returns: only the last redraw of a line is worth keeping.
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n").split("\r")[-1]
            self._queue.put((kind, text))
        self._queue.put((kind, None))

    def outputs(self, *, tick_seconds: float) -> Iterator[EngineOutput]:
        """Yield what the engine says until both streams close, and a tick whenever it is quiet that long."""
        open_streams = 2
        while open_streams:
            try:
                kind, text = self._queue.get(timeout=tick_seconds)
            except queue.Empty:
                yield EngineOutput("tick")
                continue
            if text is None:
                open_streams -= 1
                continue
            if kind == "stdout" and text.startswith("{"):
                try:
                    event = json.loads(text)
                except ValueError:
                    event = None
                if isinstance(event, dict) and "event" in event:
                    yield EngineOutput("event", event=event)
                    continue
            if text.strip():
                self.log.append(text)
                yield EngineOutput("log", line=text)
        self.wait()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to exit and return its status."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def terminate(self, *, grace_seconds: float = 10.0) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left after the grace period."""
        if self.process:
            kill_process_group(self.process.pid, grace_seconds=grace_seconds, leader=self.process)


def process_group_alive(pgid: int) -> bool:
    """Whether any process of this group still exists on this machine."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_process_group(
    pgid: int, *, grace_seconds: float = 10.0, leader: subprocess.Popen | None = None
) -> None:
    """SIGTERM a process group, then SIGKILL it if anything is still there after the grace period.

    `leader` is the group leader when it is our child: it must be reaped, or its zombie keeps the group alive.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if leader is not None:
            leader.poll()
        if not process_group_alive(pgid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    if leader is not None:
        leader.wait()


def describe_exit(returncode: int) -> str:
    """'exited with status 1' or 'was killed by SIGKILL'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"
