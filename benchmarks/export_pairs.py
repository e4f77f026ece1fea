"""Benchmark: export about a million preference pairs through the command and the API.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rewardlab .venv/bin/python benchmarks/export_pairs.py

Builds (once; `--regenerate` to redo) a project in its own database, `<name>_bench_exports`: 170,000
items × 4 answers × 3 annotators by default, written with COPY. Then each measurement runs in a fresh
child process, whose wall time and peak resident memory (wait4's ru_maxrss) are reported:

- `manage.py export_data --format pairs` (pairs from each ranking: 6 per ranking, 3,060,000 rows),
- the same with `--pairs-from consensus` (6 per item, 1,020,000 rows),
- `GET /api/projects/{id}/export/?format=pairs` (both ways) through Django's test client, streamed
  and counted as it arrives.

Prints a Markdown table for BENCHMARKS.md.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench_database import benchmark_database  # benchmarks/, the script's own folder

ROOT = Path(__file__).resolve().parent.parent
PROJECT_NAME = "bench-exports"
WORDS = ["model", "answer", "reward", "ranking", "helpful", "honest", "data", "train", "loss", "token"]
WORDS += ["the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "because", "however"]


def child_env(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DATABASE_URL": database_url, "DEBUG": "0", "SECRET_KEY": "benchmark-only-secret-key"})
    env.update({"ALLOWED_HOSTS": "localhost,testserver", "SECURE_SSL_REDIRECT": "0"})
    return env


def sentences(rng: random.Random, words: int, count: int = 20_000) -> list[str]:
    """A pool of distinct-enough texts; drawing from it keeps generating a big project quick."""
    return [" ".join(rng.choices(WORDS, k=words)).capitalize() + f" ({n})." for n in range(count)]


def generate(*, items: int, answers: int, annotators: int) -> None:
    """Write the project with COPY: items, answers and one human ranking per annotator per item."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from annotation.models import Answer, ExportSnapshot, Item, Project, Ranking

    rng = random.Random(5)
    prompts, texts = sentences(rng, 25), sentences(rng, 60)
    User = get_user_model()
    now = timezone.now()
    with transaction.atomic():
        Project.objects.filter(name=PROJECT_NAME).delete()
        ExportSnapshot.objects.filter(project__name=PROJECT_NAME).delete()
        project = Project.objects.create(name=PROJECT_NAME, rankings_per_item=annotators)
        people = []
        for number in range(annotators):
            user, _ = User.objects.get_or_create(username=f"bench-annotator-{number}")
            people.append(user.pk)
        staff, _ = User.objects.get_or_create(username="bench-staff", defaults={"is_staff": True})
        Token.objects.get_or_create(user=staff)
        with connection.cursor() as cursor:
            cursor.execute("SELECT coalesce(max(id), 0) FROM annotation_item")
            first_item = cursor.fetchone()[0] + 1
            cursor.execute("SELECT coalesce(max(id), 0) FROM annotation_answer")
            first_answer = cursor.fetchone()[0] + 1
        raw = connection.connection
        started = time.monotonic()
        with raw.cursor() as cursor:
            with cursor.copy(
                f"COPY {Item._meta.db_table} (id, project_id, external_id, conversation, "
                "human_ranking_count, open_lease_count, created_at) FROM STDIN"
            ) as copy:
                for index in range(items):
                    conversation = [{"role": "user", "content": rng.choice(prompts)}]
                    copy.write_row(
                        (first_item + index, project.pk, "", json.dumps(conversation), annotators, 0, now)
                    )
            with cursor.copy(
                f"COPY {Answer._meta.db_table} (id, item_id, project_id, position, text, model_name, "
                "external_id) FROM STDIN"
            ) as copy:
                for index in range(items):
                    for position in range(answers):
                        answer_id = first_answer + index * answers + position
                        copy.write_row(
                            (answer_id, first_item + index, project.pk, position, rng.choice(texts), "m", "")
                        )
            with cursor.copy(
                f'COPY {Ranking._meta.db_table} (item_id, source, annotator_id, external_annotator, "order", '
                "not_rankable, flags, comment, seconds_spent, created_at) FROM STDIN"
            ) as copy:
                for index in range(items):
                    ids = [first_answer + index * answers + position for position in range(answers)]
                    for person in people:
                        order = ids[:]
                        rng.shuffle(order)
                        copy.write_row(
                            (
                                first_item + index,
                                "human",
                                person,
                                "",
                                json.dumps([[answer] for answer in order]),
                                False,
                                "{}",
                                "",
                                rng.uniform(5, 90),
                                now,
                            )
                        )
            for table in (Item, Answer, Ranking):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table._meta.db_table}', 'id'), "
                    f"(SELECT max(id) FROM {table._meta.db_table}))"
                )
        print(f"generated {items} items in {time.monotonic() - started:.0f} s", file=sys.stderr)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def measure(command: list[str], env: dict[str, str]) -> dict[str, float | str]:
    """Run a child process; its wall time, peak RSS and what it printed last on stderr."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    if process.returncode:
        raise SystemExit(f"{command} failed ({process.returncode}):\n{stderr}")
    return {
        "seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_mb": usage.ru_maxrss / 1024,
        "stderr": stderr.strip().splitlines()[-1],
    }


def api_child(project_id: int, query: str) -> None:
    """Stream one export through the test client and count the lines that arrive."""
    from django.test import Client
    from rest_framework.authtoken.models import Token

    token = Token.objects.get(user__username="bench-staff").key
    response = Client(HTTP_AUTHORIZATION=f"Token {token}", HTTP_HOST="localhost").get(
        f"/api/projects/{project_id}/export/?{query}"
    )
    assert response.status_code == 200, response.status_code
    lines = 0
    size = 0
    for chunk in response.streaming_content:
        lines += chunk.count(b"\n")
        size += len(chunk)
    print(f"received {lines} rows, {size / 1e6:.0f} MB", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=170_000)
    parser.add_argument("--answers", type=int, default=4)
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--api-child", nargs=2, metavar=("PROJECT_ID", "QUERY"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.api_child:
        setup_django()
        api_child(int(args.api_child[0]), args.api_child[1])
        return

    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rewardlab")
    base_name = urlsplit(base_url).path.lstrip("/") or "rewardlab"
    database_url = benchmark_database(base_url, f"{base_name}_bench_exports")
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    subprocess.run(migrate, cwd=ROOT, env=child_env(database_url), check=True)
    os.environ.update(child_env(database_url))
    setup_django()
    from annotation.models import Item, Project, Ranking

    project = Project.objects.filter(name=PROJECT_NAME).first()
    if args.regenerate or project is None or Item.objects.filter(project=project).count() != args.items:
        generate(items=args.items, answers=args.answers, annotators=args.annotators)
        project = Project.objects.get(name=PROJECT_NAME)
    rankings = Ranking.objects.filter(item__project=project).count()
    print(f"{Item.objects.filter(project=project).count()} items, {rankings} rankings", file=sys.stderr)

    env = child_env(database_url)
    output = Path(os.environ.get("TMPDIR", "/tmp")) / "rewardlab-bench-pairs.jsonl"
    runs = [
        ("command", "rankings", [sys.executable, "manage.py", "export_data", "--project", PROJECT_NAME,
                                 "--format", "pairs", "--no-progress", "-o", str(output)]),
        ("command", "consensus", [sys.executable, "manage.py", "export_data", "--project", PROJECT_NAME,
                                  "--format", "pairs", "--pairs-from", "consensus", "--no-progress",
                                  "-o", str(output)]),
        ("API", "rankings", [sys.executable, __file__, "--api-child", str(project.pk), "format=pairs"]),
        ("API", "consensus", [sys.executable, __file__, "--api-child", str(project.pk),
                              "format=pairs&pairs_from=consensus"]),
    ]  # fmt: skip
    print("| path | pairs from | pairs | wall s | pairs/s | exporter CPU s | pairs per CPU s | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for path, source, command in runs:
        result = measure(command, env)
        # The command reports what it wrote, the API child what it received.
        pairs = int(result["stderr"].split()[1])
        seconds, cpu = result["seconds"], result["cpu_seconds"]
        print(
            f"| {path} | {source} | {pairs:,} | {seconds:.1f} | {pairs / seconds:,.0f} "
            f"| {cpu:.1f} | {pairs / cpu:,.0f} | {result['peak_mb']:.0f} |",
            flush=True,
        )
    # Other work on the machine slows the wall-clock figures; say how busy it was.
    print(f"\nload average after the runs: {os.getloadavg()}", file=sys.stderr)
    output.unlink(missing_ok=True)


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewardlab.settings")
    import django

    django.setup()


if __name__ == "__main__":
    main()
