"""The child-process runner on its own: command lines, output reading, killing whole process trees."""

import sys
import textwrap
import time

from training.runner import (
    EngineProcess,
    describe_exit,
    engine_command,
    kill_processes_with_argument,
    process_alive,
    process_descendants,
    processes_with_argument,
)


def test_more_than_one_gpu_runs_the_engine_under_torchrun():
    assert engine_command(subcommand="train", arguments=["--data", "x"], gpus=1) == [
        sys.executable,
        "-m",
        "training.reward_model",
        "train",
        "--data",
        "x",
    ]
    assert engine_command(subcommand="train", arguments=["--data", "x"], gpus=4)[:6] == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "4",
        "-m",
    ]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_events_log_lines_and_quiet_ticks_are_told_apart():
    engine = EngineProcess(
        python(
            """
            import sys, time
            print('{"event": "progress", "step": 1, "total_steps": 2}', flush=True)
            print("not json", flush=True)
            sys.stderr.write("train:  50%|#####|\\rtrain: 100%|##########|\\n"); sys.stderr.flush()
            time.sleep(0.6)
            print('{"event": "result", "eval": {}}', flush=True)
            """
        )
    )
    engine.start()

    outputs = list(engine.outputs(tick_seconds=0.2))

    events = [o.event["event"] for o in outputs if o.kind == "event"]
    assert events == ["progress", "result"]
    assert "tick" in [o.kind for o in outputs]
    # stdout and stderr are read by two threads, so their relative order is not fixed.
    assert sorted(engine.log) == ["not json", "train: 100%|##########|"]  # only tqdm's last redraw
    assert engine.returncode == 0


def test_terminate_kills_children_that_left_the_process_group(tmp_path):
    marker = f"{tmp_path}/run-1/"
    # Like torchrun: a parent whose workers start sessions of their own, and ignore SIGTERM for good measure.
    engine = EngineProcess(
        python(
            f"""
            import subprocess, sys, time
            worker = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
            command = [sys.executable, "-c", worker, "--output", "{marker}model"]
            for _ in range(2):
                subprocess.Popen(command, start_new_session=True)
            print('{{"event": "start"}}', flush=True)
            time.sleep(600)
            """
        )
    )
    root = engine.start()
    try:
        deadline = time.monotonic() + 30
        while len(process_descendants(root)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = process_descendants(root)
        assert len(workers) == 2 and set(workers) <= set(processes_with_argument(marker))

        engine.terminate(grace_seconds=1, marker=marker)

        assert engine.returncode is not None
        assert not any(process_alive(pid) for pid in [root, *workers])
    finally:
        kill_processes_with_argument(marker)  # never leave sleepers behind when an assertion fails


def test_exit_descriptions_name_the_signal():
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(1) == "exited with status 1"
