"""`python -m pipelines.store.worker JOB_ID`: the process a background job runs in.

Kept apart from `pipelines.store.jobs` so that module is only ever imported once per process (as a
`-m` target it would be loaded a second time as `__main__`, defining its tables twice).
"""

import sys

from pipelines.store.jobs import run_worker

if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m pipelines.store.worker JOB_ID", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(run_worker(sys.argv[1]))
