"""What an Airflow worker has loaded before a task's ``execute`` runs, for the cells of our operators.

A task runs in a process forked from Airflow's task supervisor: the supervisor and task-runner modules
are imported and the plugins are loaded (the listener manager loads them before ``on_starting``).
A fresh benchmark process has none of that, so ``Bitrix24Hook.get_connection`` would import the
supervisor module lazily and the hook-lineage collector would load the plugins inside the timed call:
costs Airflow pays once per worker process, before any operator runs. Importing this module (in the
cell's untimed import phase) pays them there, as a worker does. Peers use no Airflow and skip it.
"""

from __future__ import annotations

import importlib

for _module in ("airflow.sdk.execution_time.supervisor", "airflow.sdk.execution_time.task_runner"):
    importlib.import_module(_module)

try:  # Airflow 3.1+: the Task SDK's listener manager (loads the plugins, as the task runner does)
    from airflow.sdk.listener import get_listener_manager
except ImportError:  # pragma: no cover - older layouts
    from airflow.listeners.listener import get_listener_manager

get_listener_manager()
