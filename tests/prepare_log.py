"""`hfllm ...` with every process's claim of the output folder (run_folder.Plan.claim) logged, for tests/test_scale.py.

    accelerate launch ... tests/prepare_log.py reward --overwrite ...   (PREPARE_LOG=file.jsonl)

The main process waits a second before its claim, so a stage that let every process claim the
folder at once (each removing it under --overwrite) shows in the log: another process claimed
first, and saw the finished run the main process had not yet removed.
"""

import json
import os
import sys
import time

from hfllm import run_folder
from hfllm.cli import main

claim = run_folder.Plan.claim


def logged_claim(plan, *args, **kwargs):
    if plan.claimed:
        return claim(plan, *args, **kwargs)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        time.sleep(1.0)
    entry = {"rank": rank, "start": time.time(), "saw_finished_run": run_folder.is_complete(plan.folder)}
    try:
        return claim(plan, *args, **kwargs)
    finally:
        with open(os.environ["PREPARE_LOG"], "a") as log:
            log.write(json.dumps({**entry, "end": time.time()}) + "\n")


run_folder.Plan.claim = logged_claim
sys.exit(main(sys.argv[1:]))
