"""Import a generated file of N Open-Assistant message rows or ranking rows and report speed and peak memory;
or import a hostile file, which must be refused, and report the peak memory of refusing it.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rewardlab SECRET_KEY=bench \
        .venv/bin/python benchmarks/import_large_file.py --format oasst-messages --trees 20000
    ... benchmarks/import_large_file.py --hostile gzip-bomb    # ~1 MB of .jsonl.gz, one line of 1 GiB
    ... benchmarks/import_large_file.py --hostile long-line    # one line of 200 MB
    ... benchmarks/import_large_file.py --hostile array-bomb   # ~1 MB of .json.gz, its second row 1 GiB
    ... benchmarks/import_large_file.py --hostile parquet-group  # one Parquet row group of 300 MB
    ... benchmarks/import_large_file.py --hostile parquet-rows   # 200 MB of Parquet in 20 MB row groups

The import runs in a throwaway project that is deleted afterwards. Peak memory (ru_maxrss) should
stay flat as the file grows: run it at two sizes and compare. A hostile file is imported in a child
process of its own, so that the peak is that import's and not the file generator's; `--size-mb` sets
the size of its long line.
"""

import argparse
import gzip
import json
import os
import resource
import subprocess
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


# Each hostile file: its name, default size of its long line in MB, and the text around that line.
HOSTILE = {
    "gzip-bomb": ("bomb.jsonl.gz", 1024, b'{"prompt": "', b'", "answers": ["a", "b"]}\n'),
    "long-line": ("long.jsonl", 200, b'{"prompt": "', b'", "answers": ["a", "b"]}\n'),
    "array-bomb": (
        "bomb.json.gz",
        1024,
        b'[{"prompt": "Hi?", "answers": ["a", "b"]},\n{"prompt": "',
        b'", "answers": ["a", "b"]}]\n',
    ),
    # Parquet: rows of 100 kB of random hex (incompressible, so the metadata states their real size), in
    # one row group of the whole size (refused by IMPORT_MAX_PARQUET_ROW_GROUP_BYTES unless under it),
    # or in row groups of 20 MB (within the limits: imported).
    "parquet-group": ("group.parquet", 300, b"", b""),
    "parquet-rows": ("rows.parquet", 200, b"", b""),
}
PARQUET_ROW_BYTES = 100_000


def write_hostile(kind: str, folder: Path, size_mb: int) -> Path:
    """A file whose one long line (or array row) holds `size_mb` MB of one letter: ~1,000x smaller in gzip."""
    name, _, prefix, suffix = HOSTILE[kind]
    path = folder / name
    if name.endswith(".parquet"):
        # In a process of its own: Linux keeps a process's peak RSS across exec, so a parent that held
        # the table would lend its peak to the importing child's figure.
        command = [sys.executable, __file__, "--write-parquet-in-child", kind, str(path), str(size_mb)]
        subprocess.run(command, check=True)
        return path
    block = b"x" * 1_000_000
    with gzip.open(path, "wb", compresslevel=9) if name.endswith(".gz") else path.open("wb") as out:
        out.write(prefix)
        for _ in range(size_mb):
            out.write(block)
        out.write(suffix)
    return path


def write_parquet(kind: str, path: Path, size_mb: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    count = size_mb * 1_000_000 // PARQUET_ROW_BYTES
    rows = [
        {"prompt": os.urandom(PARQUET_ROW_BYTES // 2).hex(), "answers": ["a", "b"], "ranking": [0, 1]}
        for _ in range(count)
    ]
    group = count if kind == "parquet-group" else 20_000_000 // PARQUET_ROW_BYTES
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=group, compression="zstd")


def import_in_this_process(path: Path) -> dict:
    """Import `path` into a throwaway project; what happened, how long it took and the peak RSS."""
    from annotation.imports import ImportFailed

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    project = Project.objects.create(name=f"benchmark-hostile-{os.getpid()}-{time.time()}")
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        batch = import_file(path=path, project=project)
        outcome = f"imported ({batch.items_created} items)"
    except ImportFailed as exc:
        outcome = f"refused: {exc}"
    except Exception as exc:  # what an import that lets such a file through dies of (a 500 in the API)
        outcome = f"failed with {type(exc).__name__}: {str(exc)[:200]}"
    finally:
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        project.delete()
    return {
        "outcome": outcome,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "rss_before_mib": rss_before,
        "rss_peak_mib": rss_peak,
    }


def hostile(kind: str, size_mb: int | None) -> None:
    size_mb = size_mb or HOSTILE[kind][1]
    with tempfile.TemporaryDirectory() as folder:
        path = write_hostile(kind, Path(folder), size_mb)
        child = subprocess.run(
            [sys.executable, __file__, "--import-in-child", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(child.stdout.splitlines()[-1])
        file_mb = path.stat().st_size / 1e6
    # The child's own figure, checked against what the kernel says of the (only) child.
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"{kind}: {file_mb:.1f} MB file, a line of {size_mb:,} MB; {result['outcome']}\n"
        f"  in {result['seconds']:.2f} s (importer CPU {result['cpu_seconds']:.2f} s); peak RSS "
        f"{result['rss_peak_mib']:.0f} MiB (before the import {result['rss_before_mib']:.0f} MiB; "
        f"the child's ru_maxrss {children_peak:.0f} MiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--format", choices=["oasst-messages", "rankings"], default="oasst-messages")
    parser.add_argument("--trees", type=int, default=20000, help="trees (oasst-messages) or rows (rankings)")
    parser.add_argument("--gz", action="store_true")
    parser.add_argument("--again", action="store_true", help="then import it again (adds nothing)")
    parser.add_argument("--hostile", choices=sorted(HOSTILE), help="import a hostile file instead")
    parser.add_argument("--size-mb", type=int, help="the hostile file's long line, in MB")
    parser.add_argument("--import-in-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--write-parquet-in-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_parquet_in_child:
        kind, path, size_mb = args.write_parquet_in_child
        write_parquet(kind, Path(path), int(size_mb))
        return
    if args.import_in_child:
        print(json.dumps(import_in_this_process(args.import_in_child)))
        return
    if args.hostile:
        hostile(args.hostile, args.size_mb)
        return

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
            if args.again:
                # Every item is looked up, and its conversation compared, and nothing is written.
                started, cpu_started = time.perf_counter(), time.process_time()
                import_file(path=path, project=project, format=args.format)
                again = (time.perf_counter() - started, time.process_time() - cpu_started)
        finally:
            project.delete()
    print(
        f"{args.format}{' (gz)' if args.gz else ''}: {size_mb:.0f} MB, {batch.lines_read} lines, "
        f"{batch.items_created} items, {batch.answers_created} answers, {batch.rankings_created} rankings "
        f"in {seconds:.1f} s ({batch.lines_read / seconds:.0f} lines/s, importer CPU {cpu_seconds:.1f} s); "
        f"peak RSS {rss_after:.0f} MiB (before the import {rss_before:.0f} MiB)"
    )
    if args.again:
        print(f"  again: {again[0]:.1f} s (importer CPU {again[1]:.1f} s)")


if __name__ == "__main__":
    main()
