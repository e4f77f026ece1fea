"""CPU per "next item" in the `coverage` and `model` work orders, in-process, at N items (issue #13).

    .venv/bin/python benchmarks/work_order_next.py --items 100000 --calls 400

For the size: a database `rewardlab_bench_order_<items>` beside DATABASE_URL's (created, migrated and
loaded once: items × 4 answers, scattered model_priority as a scoring pass leaves it); then, per order,
the work is reset and `--calls` rounds of assignment_next + ranking_submit run over 16 annotators on
one connection. It reports the CPU of this process plus that of its PostgreSQL backend per call (next
alone and next + submit), and the EXPLAIN (ANALYZE, BUFFERS) of the next-item query afterwards, as one
JSON line.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from assignment_load import cpu_seconds, load_items, next_item_plan, reset_work, server_environment  # noqa: E402
from bench_database import benchmark_database  # noqa: E402


def _setup(database_url: str) -> None:
    os.environ.update(server_environment(database_url))  # DEBUG off, as the load benchmark serves it
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewardlab.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def measure(project, order: str, calls: int) -> dict:
    """CPU (this process + its database backend) per next and per next + submit, in milliseconds."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotation.assignment import assignment_next, ranking_submit
    from annotation.models import Project

    Project.objects.filter(pk=project.pk).update(work_order=order)
    project.refresh_from_db()
    reset_work(project)
    annotators = list(get_user_model().objects.filter(username__startswith="bench-annotator-").order_by("id"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    next_cpu = total_cpu = 0.0
    for n in range(calls):
        annotator = annotators[n % len(annotators)]
        start = time.process_time() + cpu_seconds([backend])
        lease = assignment_next(annotator=annotator, project=project)
        middle = time.process_time() + cpu_seconds([backend])
        ranking_submit(assignment_id=lease.pk, annotator=annotator, order=[[a] for a in lease.answer_order])
        end = time.process_time() + cpu_seconds([backend])
        next_cpu += middle - start
        total_cpu += end - start
    return {
        "cpu_ms_per_next": round(1000 * next_cpu / calls, 3),
        "cpu_ms_per_next_and_submit": round(1000 * total_cpu / calls, 3),
        "plan": next_item_plan(project, annotators[0].username),
    }


def main() -> None:
    """Measure both orders at each size and print the figures as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2, help="alternate the orders this many times")
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rewardlab")
    _setup(benchmark_database(base, f"rewardlab_bench_order_{args.items}"))
    from django.db import connection

    project, _ = load_items(items=args.items, answers=4, annotators=16, rankings_per_item=3)
    with connection.cursor() as cursor:
        # What a scoring pass leaves: every item's priority somewhere in (0, 1).
        cursor.execute(
            "UPDATE annotation_item SET model_priority = random() WHERE project_id = %s", [project.pk]
        )
    runs: dict[str, list] = {"coverage": [], "model": []}
    for _ in range(args.repeats):
        for order in runs:
            runs[order].append(measure(project, order, args.calls))
    result = {"items": args.items, "calls": args.calls}
    for order, measured in runs.items():
        result[order] = {
            "cpu_ms_per_next": min(r["cpu_ms_per_next"] for r in measured),
            "cpu_ms_per_next_and_submit": min(r["cpu_ms_per_next_and_submit"] for r in measured),
            "all_runs": [[r["cpu_ms_per_next"], r["cpu_ms_per_next_and_submit"]] for r in measured],
            "plan": measured[-1]["plan"],
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
