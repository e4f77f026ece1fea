"""Load N items into a benchmark database, serve it with gunicorn and drive next → submit with Locust.

    .venv/bin/python benchmarks/assignment_load.py --items 100000 --annotators 16 --duration 60

What it does, in order:

1. creates the database `rewardlab_bench_<items>` next to DATABASE_URL's (default
   postgres://postgres@127.0.0.1:5432) if missing, and migrates it;
2. loads a project with N items × 4 answers and one API token per simulated annotator (once; a
   later run with the same N reuses them), then clears earlier rankings and leases so that every
   run starts from the same state;
3. starts gunicorn (DEBUG off, persistent DB connections) and runs Locust headless: each simulated
   annotator loops POST next → POST submit with no think time (benchmarks/locustfile.py);
4. prints p50/p95/p99 latency, requests/s and ranked items/s, and the EXPLAIN (ANALYZE, BUFFERS)
   plan of the next-item query as it stands after the run, as Markdown for BENCHMARKS.md.

Load generator, web server and PostgreSQL all share the one machine, so the figures are a floor.
"""

import argparse
import csv
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench_database import benchmark_database  # benchmarks/, the script's own folder

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
FILLER = (
    "Here is a careful answer with a few paragraphs of **Markdown**, a list and some code.\n\n"
    "- first point\n- second point\n\n```python\nprint('hello')\n```\n"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--answers", type=int, default=4, help="answers per item")
    parser.add_argument("--annotators", type=int, default=16, help="concurrent simulated annotators")
    parser.add_argument("--duration", type=int, default=60, help="seconds of load")
    parser.add_argument("--rankings-per-item", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker (gthread if > 1)")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument(
        "--server-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rewardlab"),
        help="any database URL on the PostgreSQL server to use; only its host part is kept",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--mode",
        choices=["rank", "progress"],
        default="rank",
        help="rank: next → submit; progress: only GET progress, the floor of an authenticated API call",
    )
    parser.add_argument(
        "--open-rate",
        type=float,
        default=0,
        help="open loop: items/s offered by --annotators users with exponential think time (Poisson)",
    )
    parser.add_argument(
        "--gold-share", type=float, default=0, help="share of the items marked gold (known ranking)"
    )
    parser.add_argument("--gold-rate", type=float, default=0, help="the project's gold_rate during the run")
    parser.add_argument(
        "--explain-only", action="store_true", help="only print the next-item plan on the data as it stands"
    )
    return parser.parse_args()


def server_environment(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "0",
        "SECRET_KEY": "benchmark-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "DATABASE_CONN_MAX_AGE": "600",
        "LOG_LEVEL": "WARNING",
        "REWARDLAB_VAR_DIR": str(ROOT / "var" / "bench"),
    }


def load_items(*, items: int, answers: int, annotators: int, rankings_per_item: int):
    """The benchmark project with `items` items (loaded once) and the annotators' API tokens."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from annotation.models import Answer, Item, Project

    defaults = {"guidelines": "Rank the **best** answer first."}
    project, _ = Project.objects.get_or_create(name="Benchmark", defaults=defaults)
    Project.objects.filter(pk=project.pk).update(rankings_per_item=rankings_per_item, allow_ties=True)
    project.refresh_from_db()
    if Item.objects.filter(project=project).count() != items:
        Item.objects.filter(project=project).delete()
        started = time.perf_counter()
        batch = 5000
        for start in range(0, items, batch):
            created = Item.objects.bulk_create(
                Item(
                    project=project,
                    external_id=f"bench-{n}",
                    conversation=[{"role": "user", "content": f"Question {n}: how do I do thing {n}?"}],
                )
                for n in range(start, min(start + batch, items))
            )
            Answer.objects.bulk_create(
                Answer(
                    item=item, project=project, position=p, text=f"Answer {p} to {item.external_id}. {FILLER}"
                )
                for item in created
                for p in range(answers)
            )
        took = time.perf_counter() - started
        print(f"loaded {items} items × {answers} answers in {took:.0f} s", flush=True)
    tokens = []
    for n in range(annotators):
        user, _ = get_user_model().objects.get_or_create(username=f"bench-annotator-{n}")
        tokens.append(Token.objects.get_or_create(user=user)[0].key)
    return project, tokens


def gold_set(project, *, share: float, rate: float) -> None:
    """Mark every 1/share-th item gold (its answers in position order) and set the project's gold_rate."""
    from django.db import connection

    from annotation.models import Project

    Project.objects.filter(pk=project.pk).update(gold_rate=rate)
    project.refresh_from_db()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE annotation_item SET gold_order = NULL WHERE project_id = %s", [project.pk])
        if share > 0:
            cursor.execute(
                "UPDATE annotation_item SET gold_order = (SELECT json_agg(json_build_array(a.id)"
                " ORDER BY a.position) FROM annotation_answer a WHERE a.item_id = annotation_item.id)"
                " WHERE project_id = %s AND id %% %s = 0",
                [project.pk, max(1, round(1 / share))],
            )


def reset_work(project) -> None:
    """Forget earlier runs' leases, rankings and stored HTML: each run starts as a fresh import."""
    from django.db import connection

    from annotation.models import Assignment, Item, Ranking

    Assignment.objects.filter(project=project).delete()
    Ranking.objects.filter(item__project=project, source=Ranking.Source.HUMAN).delete()
    Item.objects.filter(project=project).exclude(
        human_ranking_count=0, open_lease_count=0, rendered__isnull=True
    ).update(human_ranking_count=0, open_lease_count=0, rendered=None)
    with connection.cursor() as cursor:
        for table in ("annotation_item", "annotation_answer", "annotation_assignment", "annotation_ranking"):
            cursor.execute(f"VACUUM ANALYZE {table}")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the given live processes have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _children_cpu_seconds() -> float:
    """User + system CPU of this process's children that have exited (here: the Locust runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (FileNotFoundError, ValueError):
            continue
    return found


def database_backends() -> list[int]:
    """PostgreSQL backend processes connected to this database (the gunicorn workers' connections)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"gunicorn did not answer on {url} within {timeout} s")


def run_locust(*, url: str, project_id: int, tokens: list[str], users: int, duration: int, prefix: str):
    env = {**os.environ, "BENCH_TOKENS": ",".join(tokens), "BENCH_PROJECT_ID": str(project_id)}
    command = [
        str(VENV_BIN / "locust"),
        "-f",
        str(ROOT / "benchmarks" / "locustfile.py"),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{duration}s",
        "--host",
        url,
        "--csv",
        prefix,
        "--only-summary",
        "--stop-timeout",
        "5",
        "--loglevel",
        "WARNING",
    ]
    subprocess.run(command, env=env, check=False)
    with open(f"{prefix}_stats.csv", newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def next_item_plan(project, username: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the exact query assignment_next runs, rolled back afterwards."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from annotation.assignment import free_item_query

    annotator = get_user_model().objects.get(username=username)
    # Fresh statistics, as autovacuum would have them on a long-running system.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_item, annotation_assignment, annotation_ranking")
    sql, params = free_item_query(annotator=annotator, project=project)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        plan = "\n".join(line for (line,) in cursor.fetchall())
        transaction.set_rollback(True)  # ANALYZE ran it: let go of the row it locked
    return plan


def main() -> None:
    args = parse_args()
    os.environ["BENCH_MODE"] = args.mode  # read by the Locust users
    database_url = benchmark_database(args.server_url, f"rewardlab_bench_{args.items}")
    env = server_environment(database_url)
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    subprocess.run(migrate, cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewardlab.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from annotation.models import Ranking

    project, tokens = load_items(
        items=args.items,
        answers=args.answers,
        annotators=args.annotators,
        rankings_per_item=args.rankings_per_item,
    )
    if args.explain_only:
        print(next_item_plan(project, "bench-annotator-0"))
        return
    gold_set(project, share=args.gold_share, rate=args.gold_rate)
    reset_work(project)
    if args.open_rate:
        os.environ.update(BENCH_RATE=str(args.open_rate), BENCH_USERS=str(args.annotators))

    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    gunicorn = [
        str(VENV_BIN / "gunicorn"),
        "rewardlab.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--log-level",
        "warning",
    ]
    if args.threads > 1:
        gunicorn += ["--worker-class", "gthread", "--threads", str(args.threads)]
    server = subprocess.Popen(gunicorn, cwd=ROOT, env=env)
    try:
        wait_until_up(url, server)
        with tempfile.TemporaryDirectory() as tmp:
            # A short unmeasured round first, so that every worker has imported everything and opened its
            # database connection; then the same clean start as before.
            run_locust(
                url=url,
                project_id=project.pk,
                tokens=tokens,
                users=args.annotators,
                duration=5,
                prefix=f"{tmp}/warmup",
            )
            reset_work(project)
            # Other work on the machine skews the figures: the 1/5/15-minute load averages go in the report.
            load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            # CPU actually spent by the web workers and their database backends, whatever else runs here:
            # the machine-independent cost of one ranked item.
            web_pids = [server.pid, *children_of(server.pid)]
            db_pids = database_backends()
            web_cpu, db_cpu = cpu_seconds(web_pids), cpu_seconds(db_pids)
            # Locust shares the machine: its CPU (a child that has exited by then) is part of the budget.
            load_cpu = _children_cpu_seconds()
            started = time.perf_counter()
            stats = run_locust(
                url=url,
                project_id=project.pk,
                tokens=tokens,
                users=args.annotators,
                duration=args.duration,
                prefix=f"{tmp}/locust",
            )
            elapsed = time.perf_counter() - started
            web_cpu, db_cpu = cpu_seconds(web_pids) - web_cpu, cpu_seconds(db_pids) - db_cpu
            load_cpu = _children_cpu_seconds() - load_cpu
            load_after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    finally:
        server.terminate()
        server.wait(timeout=30)

    ranked = Ranking.objects.filter(item__project=project, source=Ranking.Source.HUMAN).count()
    plan = next_item_plan(project, "bench-annotator-0")
    requests = int(stats["Aggregated"]["Request Count"]) if "Aggregated" in stats else 0
    figures = {
        "items": args.items,
        "annotators": args.annotators,
        "duration_s": args.duration,
        "mode": args.mode,
        "gunicorn": f"{args.workers} workers × {args.threads} threads",
        "items_ranked": ranked,
        "items_per_s": round(ranked / args.duration, 1),
        "wall_s": round(elapsed, 1),
        "web_cpu_ms_per_item": round(1000 * web_cpu / max(ranked, 1), 1),
        "db_cpu_ms_per_item": round(1000 * db_cpu / max(ranked, 1), 1),
        "locust_cpu_ms_per_item": round(1000 * load_cpu / max(ranked, 1), 1),
        "cpu_ms_per_request": {
            "gunicorn": round(1000 * web_cpu / max(requests, 1), 2),
            "postgresql": round(1000 * db_cpu / max(requests, 1), 2),
            "locust": round(1000 * load_cpu / max(requests, 1), 2),
        },
        "load_average_before": load_before,
        "load_average_after": load_after,
        "requests": {
            name: {
                "count": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "rps": round(float(row["Requests/s"]), 1),
                "p50_ms": row["50%"],
                "p95_ms": row["95%"],
                "p99_ms": row["99%"],
                "max_ms": round(float(row["Max Response Time"])),
            }
            for name, row in stats.items()
        },
    }
    print()
    print(f"### {args.items:,} items × {args.answers} answers, {args.annotators} annotators")
    print()
    print("| request | count | failures | req/s | p50 ms | p95 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in figures["requests"].items():
        print(
            f"| {name} | {row['count']} | {row['failures']} | {row['rps']} | {row['p50_ms']} | "
            f"{row['p95_ms']} | {row['p99_ms']} | {row['max_ms']} |"
        )
    print()
    print(f"Items ranked: {ranked} in {args.duration} s = **{figures['items_per_s']} items/s**")
    print()
    print(f"Gunicorn: {figures['gunicorn']}; load average before/after: {load_before} / {load_after}")
    print()
    if args.mode == "rank":
        print(
            f"CPU per ranked item (next + submit): gunicorn {figures['web_cpu_ms_per_item']} ms, "
            f"PostgreSQL {figures['db_cpu_ms_per_item']} ms, Locust {figures['locust_cpu_ms_per_item']} ms"
        )
    per_request = ", ".join(f"{name} {ms} ms" for name, ms in figures["cpu_ms_per_request"].items())
    print(f"CPU per request: {per_request}")
    print()
    print("Next-item query after the run (annotator bench-annotator-0):")
    print()
    print("```")
    print(plan)
    print("```")
    if args.json:
        args.json.write_text(json.dumps({**figures, "plan": plan}, indent=2))


if __name__ == "__main__":
    main()
