"""An example Updraft task: summarise a series of numbers and print a table and a JSON result line.

Input comes from the command line (``app.py 3 1 4 1 5``) or, with no arguments, from ``UPDRAFT_INPUT``
(comma-separated). The last line of output is JSON, so a caller can parse the result from the log tail.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import sys

from tabulate import tabulate


def summarise(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "stdev": statistics.pstdev(values),
        "min": min(values),
        "max": max(values),
    }


def main(argv: list[str]) -> int:
    raw = argv or [v for v in os.environ.get("UPDRAFT_INPUT", "").split(",") if v.strip()]
    if not raw:
        print("usage: app.py NUMBER... (or UPDRAFT_INPUT=1,2,3)", file=sys.stderr)
        return 2
    try:
        values = [float(v) for v in raw]
    except ValueError as exc:
        print(f"not a number: {exc}", file=sys.stderr)
        return 2
    result = summarise(values)
    print(tabulate(sorted(result.items()), headers=["statistic", "value"], floatfmt=".3f"))
    result["python"] = platform.python_version()  # type: ignore[assignment]
    result["input_sha256"] = hashlib.sha256(",".join(raw).encode()).hexdigest()[:16]  # type: ignore[assignment]
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
