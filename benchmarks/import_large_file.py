"""Import a generated file of N Open-Assistant message rows or ranking rows and report speed and peak memory.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rewardlab SECRET_KEY=bench \
        .venv/bin/python benchmarks/import_large_file.py --format oasst-messages --trees 20000

The import runs in a throwaway project that is deleted afterwards. Peak memory (ru_maxrss) should
stay flat as the file grows: run it at two sizes and compare.
"""

import argparse
import gzip
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewardlab.settings")

import django  # noqa: E402

django.setup()

from annotation.imports import import_file  # noqa: E402
from annotation.models import Project  # noqa: E402

FILLER = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 8


def oasst_rows(trees: int):
    """Trees of a prompt, three ranked replies and a follow-up with two replies: 7 rows, 2 items each."""
    for t in range(trees):
        tree = f"tree-{t}"
        yield {
            "message_id": tree,
            "parent_id": None,
            "message_tree_id": tree,
            "role": "prompter",
            "text": f"Question {t}? {FILLER}",
            "lang": "en",
            "deleted": False,
        }
        for r in range(3):
            yield {
                "message_id": f"{tree}-a{r}",
                "parent_id": tree,
                "message_tree_id": tree,
                "role": "assistant",
                "text": f"Answer {r} to {t}. {FILLER}",
                "rank": r,
            }
        yield {
            "message_id": f"{tree}-p2",
            "parent_id": f"{tree}-a0",
            "message_tree_id": tree,
            "role": "prompter",
            "text": f"Follow-up {t}? {FILLER}",
        }
        for r in range(2):
            yield {
                "message_id": f"{tree}-b{r}",
                "parent_id": f"{tree}-p2",
                "message_tree_id": tree,
                "role": "assistant",
                "text": f"Reply {r}. {FILLER}",
                "rank": None,
            }


def ranking_rows(rows: int):
    for n in range(rows):
        yield {
            "id": f"row-{n}",
            "prompt": f"Question {n}? {FILLER}",
            "answers": [f"Answer {a} to {n}. {FILLER}" for a in range(4)],
            "ranking": [2, [0, 1], 3],
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--format", choices=["oasst-messages", "rankings"], default="oasst-messages")
    parser.add_argument("--trees", type=int, default=20000, help="trees (oasst-messages) or rows (rankings)")
    parser.add_argument("--gz", action="store_true")
    args = parser.parse_args()

    rows = oasst_rows(args.trees) if args.format == "oasst-messages" else ranking_rows(args.trees)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("bench.jsonl.gz" if args.gz else "bench.jsonl")
        with gzip.open(path, "wt") if args.gz else path.open("w") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")
        size_mb = path.stat().st_size / 1e6
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        project = Project.objects.create(name=f"benchmark-import-{os.getpid()}-{time.time()}")
        try:
            started = time.perf_counter()
            cpu_started = time.process_time()
            batch = import_file(path=path, project=project, format=args.format)
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
            # Measured before the clean-up: deleting the project loads its rows for the cascade.
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        finally:
            project.delete()
    print(
        f"{args.format}{' (gz)' if args.gz else ''}: {size_mb:.0f} MB, {batch.lines_read} lines, "
        f"{batch.items_created} items, {batch.answers_created} answers, {batch.rankings_created} rankings "
        f"in {seconds:.1f} s ({batch.lines_read / seconds:.0f} lines/s, importer CPU {cpu_seconds:.1f} s); "
        f"peak RSS {rss_after:.0f} MiB (before the import {rss_before:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
