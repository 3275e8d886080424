"""Subprocess entry point: run one workload on one system, write its figures as JSON.

``python -m benchmarks._child --workload W --system S --params JSON --out PATH``

The parent reads ``PATH``: ``{"metrics": {...}}`` on success, ``{"error": ..., "traceback": ...}``
on failure. The process ends with ``os._exit`` once the file is written, so a thread a system
forgot to stop cannot hang the suite; the parent reaps any process left behind and reports it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any


def run(workload: str, system: str, params: dict[str, Any]) -> dict[str, float]:
    from benchmarks import _workloads

    if system == "numpy":
        return _workloads.REFERENCE_WORKLOADS[workload](**params)
    api = _workloads.load_api(system)
    return _workloads.CLUSTER_WORKLOADS[workload](api, **params)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._child")
    parser.add_argument("--workload", required=True)
    parser.add_argument("--system", required=True)
    parser.add_argument("--params", required=True, help="JSON object of keyword arguments")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        result: dict[str, Any] = {
            "metrics": run(args.workload, args.system, json.loads(args.params))
        }
        code = 0
    except BaseException as exc:
        result = {
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
        code = 1
    with open(args.out + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(args.out + ".tmp", args.out)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
