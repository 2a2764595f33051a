"""The fault run of docs/reliability.md: 10,000 messages (5% corrupt or truncated files,
the rest small files and 5-file datasets) through 3 workers on 6 partitions, with failing
proxies in front of the sources' S3 server and the STAC API, one worker SIGKILLed and
restarted twice, the broker restarted on its durable store, and PostgreSQL connections
terminated under the pgstac sink; then the account of every message (see
tests/python/faultrun.py). Prints the figures as JSON; exits 1 if anything was lost or
doubled.

Needs the stack: bench/fault_run.sh brings it up, runs this and stops it.

    python bench/fault_run.py [--messages 10000] [--workers 3] [--partitions 6] [--seed 7]
                              [--assignment group|static]

--assignment static gives each worker its partitions by hand (worker.assigned_partitions)
instead of through the group's coordinator.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))

import stack  # noqa: E402
from faultrun import FaultRun  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--assignment", choices=("group", "static"), default="group")
    ap.add_argument("--keep", help="a folder to keep the run's files and worker logs in")
    args = ap.parse_args()
    stack.clear_catalog()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        run = FaultRun(workdir, args.messages, workers=args.workers, partitions=args.partitions,
                       seed=args.seed, assignment=args.assignment, log=lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True))
        try:
            figures = run.run(timeout=6 * 3600)
        except AssertionError as e:
            print(f"fault run FAILED: {e}", file=sys.stderr)
            print(json.dumps(dict(run.figures), indent=2))
            return 1
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
