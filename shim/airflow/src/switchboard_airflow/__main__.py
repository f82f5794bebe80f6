"""``python -m switchboard_airflow check``: diagnoses the backend's settings in this environment."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m switchboard_airflow",
        description="The Switchboard secrets backend for Airflow.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "check",
        help="say, line by line, whether this Airflow environment reaches its Switchboard resolver",
        description="Reads the settings Airflow gives the backend ([secrets] backend_kwargs, on Airflow 3 "
        "also [workers] secrets_backend_kwargs, then SWITCHBOARD_* variables) and checks the address, the "
        "token, the deployment and its connections. Exits 1 if anything failed. Never prints the token.",
    )
    parser.parse_args(argv)
    from switchboard_airflow.check import run

    return run()


if __name__ == "__main__":
    sys.exit(main())
