"""Versions pair by pair: the held-out pairs whose order changed between two versions of a project.

Each run's engine writes, beside its model, the margin r(better) − r(worse) of every distinct held-out pair
(`evaluation/held_out.jsonl`, one JSON line per pair; see the engine's `evaluation.pair_margins`). The
project's evaluation split keeps its items as the project grows (`execution.item_in_evaluation_split`), so
an older version's pairs are, but for rankings deleted since, among a newer one's: two versions are
compared on the pairs both were evaluated on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HELD_OUT_MARGINS = Path("evaluation") / "held_out.jsonl"
# How many flipped pairs are kept to browse: those whose margin moved most.
FLIP_SAMPLE = 50

PairKey = tuple[str, str, str]


def pair_margins_read(*, model_directory: str | Path) -> dict[PairKey, float] | None:
    """The held-out margins a version's run wrote, by (item, better answer, worse answer); None if absent."""
    path = Path(model_directory) / HELD_OUT_MARGINS
    try:
        with path.open(encoding="utf-8") as lines:
            margins = {}
            for line in lines:
                row = json.loads(line)
                margins[(str(row["group"]), str(row["better"]), str(row["worse"]))] = float(row["margin"])
            return margins
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("Unreadable pair margins in %s", path, exc_info=True)
        return None


def pair_flips(
    *, newer: dict[PairKey, float], older: dict[PairKey, float], sample: int = FLIP_SAMPLE
) -> dict[str, Any]:
    """The pairs both versions were evaluated on whose order changed (right ↔ wrong; a tie counts as wrong).

    Returns the counts and the `sample` flipped pairs whose margin moved most, each with both margins.
    """
    shared = newer.keys() & older.keys()
    flipped = [key for key in shared if (newer[key] > 0) != (older[key] > 0)]
    now_right = sum(newer[key] > 0 for key in flipped)
    biggest = sorted(flipped, key=lambda key: (-abs(newer[key] - older[key]), key))[:sample]
    return {
        "compared_pairs": len(shared),
        "flipped": len(flipped),
        "now_right": now_right,
        "now_wrong": len(flipped) - now_right,
        "sample": [
            {
                "item": key[0],
                "better": key[1],
                "worse": key[2],
                "margin": round(newer[key], 4),
                "previous_margin": round(older[key], 4),
            }
            for key in biggest
        ],
    }


def version_flips(*, newer_directory: str | Path, older_directory: str | Path) -> dict[str, Any] | None:
    """`pair_flips` between two versions' model directories; None when either has no margins on disk."""
    newer = pair_margins_read(model_directory=newer_directory)
    older = pair_margins_read(model_directory=older_directory)
    if newer is None or older is None:
        return None
    return pair_flips(newer=newer, older=older)
