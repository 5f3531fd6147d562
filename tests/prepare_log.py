"""`hfllm ...` with every process's check of the output folder (run_folder.prepare) logged, for tests/test_scale.py.

    accelerate launch ... tests/prepare_log.py reward --overwrite ...   (PREPARE_LOG=file.jsonl)

The main process waits a second before its check, so a stage that let every process check the
folder at once (each removing it under --overwrite) shows in the log: another process checked
first, and saw the finished run the main process had not yet removed.
"""

import json
import os
import sys
import time

from hfllm import run_folder
from hfllm.cli import main

checked = run_folder.prepare


def logged_prepare(folder, **kwargs):
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        time.sleep(1.0)
    entry = {"rank": rank, "start": time.time(), "saw_finished_run": run_folder.is_complete(folder)}
    try:
        return checked(folder, **kwargs)
    finally:
        with open(os.environ["PREPARE_LOG"], "a") as log:
            log.write(json.dumps({**entry, "end": time.time()}) + "\n")


run_folder.prepare = logged_prepare
sys.exit(main(sys.argv[1:]))
