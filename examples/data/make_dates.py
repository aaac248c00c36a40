"""Generate the quickstart's data: ISO dates and the same date written in words.

    python examples/data/make_dates.py  # rewrites examples/data/dates/*.jsonl

A small, fully reproducible SFT task: the base model half-knows it (month names, ordering) but
not the exact output format, so a short LoRA run visibly lowers the completion loss.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

SIZES = {"train": 800, "validation": 64, "test": 128}


def main(seed: int = 0) -> None:
    rng = random.Random(seed)
    start, span = dt.date(1900, 1, 1).toordinal(), 365 * 200
    days = rng.sample(range(start, start + span), sum(SIZES.values()))
    out_dir = Path(__file__).parent / "dates"
    out_dir.mkdir(exist_ok=True)
    offset = 0
    for split, n in SIZES.items():
        with (out_dir / f"{split}.jsonl").open("w") as f:
            for ordinal in days[offset : offset + n]:
                d = dt.date.fromordinal(ordinal)
                row = {"date": d.isoformat(), "words": f"{d:%B} {d.day}, {d.year}"}
                f.write(json.dumps(row) + "\n")
        offset += n


if __name__ == "__main__":
    main()
