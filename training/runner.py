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
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
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

    def terminate(self, *, grace_seconds: float = 10.0, marker: str | None = None) -> None:
        """Stop the engine and all it started: SIGTERM, then SIGKILL whatever outlives the grace period."""
        if self.process:
            kill_process_tree(
                self.process.pid, grace_seconds=grace_seconds, leader=self.process, marker=marker
            )


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def process_alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def process_descendants(pid: int) -> list[int]:
    """Every live process below `pid` in the process tree (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for candidate in _pids():
        stat = _proc_stat(candidate)
        if stat is not None:
            children.setdefault(stat[1], []).append(candidate)
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return [p for p in found if process_alive(p)]


def processes_with_argument(marker: str) -> list[int]:
    """Live processes with `marker` inside one of their command-line arguments (a run's output directory).

    torchrun starts each worker in a session of its own, so neither the process group nor, once torchrun
    is gone, the process tree reaches them; their arguments do.
    """
    found = []
    for pid in _pids():
        try:
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(marker.encode() in argument for argument in arguments) and process_alive(pid):
            found.append(pid)
    return found


def _signal_each(pids: set[int], sig: signal.Signals) -> None:
    for pid in sorted(pids):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_process_tree(
    root: int,
    *,
    grace_seconds: float = 10.0,
    leader: subprocess.Popen | None = None,
    marker: str | None = None,
) -> None:
    """SIGTERM the root's group, its descendants and the processes carrying `marker`; SIGKILL what remains.

    `leader` is the root when it is our child: it must be reaped, or its zombie would keep it "alive".
    """

    def members() -> set[int]:
        return set(process_descendants(root)) | set(processes_with_argument(marker) if marker else [])

    targets = members()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(root, signal.SIGTERM)
    _signal_each(targets, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if leader is not None:
            leader.poll()
        if not process_alive(root) and not any(process_alive(pid) for pid in targets):
            break
        time.sleep(0.1)
    else:
        targets |= members()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(root, signal.SIGKILL)
        _signal_each(targets, signal.SIGKILL)
        # SIGKILL cannot be ignored, but it takes effect asynchronously: return once they are gone.
        deadline = time.monotonic() + 10
        while any(process_alive(pid) for pid in targets) and time.monotonic() < deadline:
            time.sleep(0.05)
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


def kill_processes_with_argument(marker: str) -> list[int]:
    """SIGKILL the live processes carrying `marker` in their arguments (orphans of a lost worker)."""
    pids = processes_with_argument(marker)
    _signal_each(set(pids), signal.SIGKILL)
    return pids
