"""Airflow secrets backend that serves a Deployment's connections from Switchboard.

    [secrets]
    backend = switchboard_airflow.SwitchboardBackend
    backend_kwargs = {"address": "switchboard-resolver:50051", "token_file": "/var/run/switchboard/token"}

``python -m switchboard_airflow check`` says, a line each, whether the settings
Airflow gives the backend reach a resolver that accepts the token.

The backend module (which imports Airflow) is loaded on first use, so the
generated stubs in ``switchboard_airflow.proto`` can be used without Airflow.
"""

__all__ = ["PROVIDER_PACKAGES", "SwitchboardBackend"]
__version__ = "0.1.0"


def __getattr__(name):
    if name in __all__:
        from switchboard_airflow import backend

        return getattr(backend, name)
    raise AttributeError(f"module 'switchboard_airflow' has no attribute {name!r}")
