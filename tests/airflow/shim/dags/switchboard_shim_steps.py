"""A DAG whose task looks connections up in steps, asking the test to act in between.

SHIM_STEPS is a JSON list of steps: "lookup CONN_ID" reads the connection
through BaseHook (recording its host, or the exception's class name), and
"ask ACTION" writes SHIM_STEPS_DIR/<n>-<ACTION> and waits for the test to write
<n>-<ACTION>.done (the test stops or starts the resolver meanwhile). The task
writes what it saw to SHIM_STEPS_DIR/seen.json when it is done.
"""

import json
import logging
import os
import time
from datetime import datetime
from pathlib import Path

try:  # Airflow 3
    from airflow.sdk import BaseHook, dag, task
except ImportError:  # Airflow 2
    from airflow.decorators import dag, task
    from airflow.hooks.base import BaseHook

log = logging.getLogger(__name__)


@dag(dag_id="switchboard_shim_steps", schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def switchboard_shim_steps():
    @task
    def lookups():
        directory = Path(os.environ["SHIM_STEPS_DIR"])
        seen = []
        for number, step in enumerate(json.loads(os.environ["SHIM_STEPS"])):
            verb, argument = step.split(" ", 1)
            if verb == "lookup":
                try:
                    seen.append(BaseHook.get_connection(argument).host)
                except Exception as error:  # noqa: BLE001 - the class name is what the test asserts
                    seen.append(type(error).__name__)
            elif verb == "ask":
                request = directory / f"{number}-{argument}"
                request.write_text(argument)
                deadline = time.monotonic() + 60
                while not Path(f"{request}.done").exists():
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the test did not answer {request.name} within 60 s")
                    time.sleep(0.05)
                log.info("SHIM-STEP %s done", argument)
        (directory / "seen.json").write_text(json.dumps(seen))

    lookups()


switchboard_shim_steps()
