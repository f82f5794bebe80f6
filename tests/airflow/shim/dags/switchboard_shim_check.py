"""A DAG whose task reads connections through BaseHook, as any DAG would.

The test points SHIM_CHECK_RESULT at a file; the task writes what it saw there
and logs the password, which Airflow's secrets masker must print as ***.
SHIM_CHECK_CONN_IDS lists the conn_ids to read (comma-separated).
"""

import json
import logging
import os
from datetime import datetime

try:  # Airflow 3
    from airflow.sdk import BaseHook, dag, task
except ImportError:  # Airflow 2
    from airflow.decorators import dag, task
    from airflow.hooks.base import BaseHook

log = logging.getLogger(__name__)


@dag(dag_id="switchboard_shim_check", schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def switchboard_shim_check():
    @task
    def read_connections():
        seen = {}
        for conn_id in os.environ["SHIM_CHECK_CONN_IDS"].split(","):
            conn = BaseHook.get_connection(conn_id)
            seen[conn_id] = {
                "conn_type": conn.conn_type,
                "host": conn.host,
                "schema": conn.schema,
                "login": conn.login,
                "password": conn.password,
                "port": conn.port,
                "extra": conn.extra_dejson,
            }
            log.info("SHIM-CHECK %s password=%s", conn_id, conn.password)
            print(f"SHIM-CHECK-PRINT {conn_id} password={conn.password}")
        with open(os.environ["SHIM_CHECK_RESULT"], "w") as handle:
            json.dump(seen, handle)

    read_connections()


switchboard_shim_check()
