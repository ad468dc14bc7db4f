"""Airflow's Task SDK from trigger code: every call on the triggerer's event loop, with async APIs.

Airflow 3.1.8's trigger runner dies ("Response read out of order!", apache/airflow#64620, fixed in
3.3 by apache/airflow#66412) when a trigger talks to its supervisor synchronously from a worker
thread (``BaseHook.get_connection``, ``Variable.get/set``, ``mask_secret``) while the event loop talks
to it too: the runner's channel (``TriggerCommsDecoder``) is only safe for ``asend`` awaited on its
own loop. A cancelled ``asend`` also leaves its answer unread for the next request, so the calls here
are shielded from cancellation.

So the provider's triggers never make a synchronous Task SDK call off the loop:

* :func:`open_hook` resolves the connection with ``aget_connection`` on the event loop, reads its
  settings there, and hands both to the :class:`~airflow_provider_b24.hooks.bitrix24.Bitrix24Hook`;
* the hook's worker threads then only do HTTP. What they still need from Airflow (the OAuth token
  pair in its Variable when tokens rotate, registering new tokens with the secrets masker) goes
  through :class:`EventLoopTaskSdk`, which runs the async call on the loop
  (``asyncio.run_coroutine_threadsafe``, as Airflow 3.3's own sync API does since #66412) and waits.

Outside a triggerer (``airflow dags test`` runs triggers in-line with an in-process supervisor that
has no ``asend``; plain scripts; tests) the Task SDK's synchronous API is used, as in a task.
This module is imported on the event loop: it imports nothing heavy (the hook only inside
:func:`open_hook`, in a worker thread).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import sync_to_async

if TYPE_CHECKING:
    from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook

__all__ = [
    "EventLoopTaskSdk",
    "aget_variable",
    "amask_secrets",
    "aset_variable",
    "open_hook",
    "triggerer_comms",
]

T = TypeVar("T")

#: Longest a worker thread waits for the event loop to answer a Task SDK call (seconds). The loop
#: only forwards it to the supervisor, which asks the API server: normally milliseconds.
LOOP_CALL_TIMEOUT_S: float = 120.0


def triggerer_comms() -> Any:
    """The triggerer's channel to its supervisor (has ``asend``), or None outside a triggerer."""
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:  # pragma: no cover - no Task SDK
        return None
    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    return comms if callable(getattr(comms, "asend", None)) else None


async def _asend(comms: Any, message: Any) -> Any:
    """``comms.asend(message)``, shielded: a cancelled caller does not cut the exchange in half
    (on Airflow 3.1 that leaves the answer in the channel for the next request: #64620)."""
    return await asyncio.shield(comms.asend(message))


async def aget_variable(name: str) -> Any:
    """The Variable's value (``None`` when it does not exist), read through the supervisor channel.

    :raises RuntimeError: naming the Variable, when the supervisor answers with another error.
    """
    comms = triggerer_comms()
    if comms is None:
        from airflow_provider_b24.hooks.token_store import SyncTaskSdk

        return await sync_to_async(SyncTaskSdk().get_variable, thread_sensitive=False)(name)
    from airflow.sdk.execution_time.comms import ErrorResponse, GetVariable, VariableResult

    response = await _asend(comms, GetVariable(key=name))
    if isinstance(response, VariableResult):
        return response.value
    if isinstance(response, ErrorResponse) and str(getattr(response.error, "value", response.error)) == (
        "VARIABLE_NOT_FOUND"
    ):
        return None
    raise RuntimeError(f"reading the Airflow Variable {name!r} failed: {response!r:.300}")


async def aset_variable(name: str, value: str, description: str) -> None:
    """Write the Variable through the supervisor channel.

    :raises RuntimeError: naming the Variable, when the supervisor answers with an error.
    """
    comms = triggerer_comms()
    if comms is None:
        from airflow_provider_b24.hooks.token_store import SyncTaskSdk

        await sync_to_async(SyncTaskSdk().set_variable, thread_sensitive=False)(name, value, description)
        return
    from airflow.sdk.execution_time.comms import ErrorResponse, PutVariable

    response = await _asend(comms, PutVariable(key=name, value=value, description=description))
    if isinstance(response, ErrorResponse):
        raise RuntimeError(f"writing the Airflow Variable {name!r} failed: {response!r:.300}")


async def amask_secrets(*values: str | None) -> None:
    """Register secrets with the log masker here and with the supervisor's (``asend``).

    Airflow 3.3 has ``amask_secret``. On 3.1 ``mask_secret`` registers locally; its synchronous
    message to the supervisor cannot be sent from the loop's thread (asgiref refuses at once, nothing
    is written), so the ``MaskSecret`` message is sent here with ``asend``.
    """
    from airflow.sdk import log as sdk_log

    amask_secret = getattr(sdk_log, "amask_secret", None)
    comms = triggerer_comms()
    for value in values:
        if not value:
            continue
        if amask_secret is not None:
            await amask_secret(value)
            continue
        sdk_log.mask_secret(value)
        if comms is not None:
            from airflow.sdk.execution_time.comms import MaskSecret

            # the local masker has it; the supervisor's is a second line
            with contextlib.suppress(Exception):
                await _asend(comms, MaskSecret(value=value, name=None))


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class EventLoopTaskSdk:
    """The Task SDK for a trigger's worker threads: each call runs on the triggerer's event loop.

    Implements :class:`~airflow_provider_b24.hooks.token_store.TaskSdk`. A worker thread blocks
    until the loop has the answer; on the loop's own thread only ``mask_secrets`` may be called (it
    masks locally, as ``mask_secret`` does there). Outside a triggerer the Task SDK's synchronous API
    is used in the calling thread.

    :param loop: the triggerer's event loop (the one the trigger runs on).
    :param timeout: seconds a worker thread waits for the loop.
    """

    def __init__(self, *, loop: asyncio.AbstractEventLoop, timeout: float = LOOP_CALL_TIMEOUT_S) -> None:
        self.loop = loop
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"EventLoopTaskSdk(loop={self.loop!r})"

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for its result (from a worker thread only)."""
        if _on_loop_thread(self.loop):
            coroutine.close()
            raise RuntimeError(
                "EventLoopTaskSdk.call() on the event loop's thread would block the loop; await the "
                "coroutine instead"
            )
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        except RuntimeError:  # the loop is closed (the triggerer is stopping)
            coroutine.close()
            raise
        return future.result(self.timeout)

    def get_variable(self, name: str) -> Any:
        if triggerer_comms() is None:
            from airflow_provider_b24.hooks.token_store import SyncTaskSdk

            return SyncTaskSdk().get_variable(name)
        return self.call(aget_variable(name))

    def set_variable(self, name: str, value: str, description: str) -> None:
        if triggerer_comms() is None:
            from airflow_provider_b24.hooks.token_store import SyncTaskSdk

            SyncTaskSdk().set_variable(name, value, description)
            return
        self.call(aset_variable(name, value, description))

    def mask_secrets(self, *values: str | None) -> None:
        from airflow_provider_b24.hooks.token_store import mask_secrets

        if triggerer_comms() is None or _on_loop_thread(self.loop):
            mask_secrets(*values)  # on the loop's thread: registered locally, nothing sent
            return
        self.call(amask_secrets(*values))


def _import_hook_module() -> None:
    import airflow_provider_b24.hooks.bitrix24  # noqa: F401


async def open_hook(conn_id: str) -> Bitrix24Hook:
    """A :class:`~airflow_provider_b24.hooks.bitrix24.Bitrix24Hook` for ``conn_id``, built on the event loop.

    In a triggerer the connection comes from ``aget_connection`` (shielded from cancellation; outside
    one, from the synchronous API in a worker thread, as in a task), its settings are read
    and validated here (raising ``Bitrix24ConfigError`` naming the field) and its secrets masked; the
    hook's worker threads reach Airflow only through an :class:`EventLoopTaskSdk` on this loop.
    Call it on the loop the trigger runs on (worker threads: ``EventLoopTaskSdk.call(open_hook(...))``).

    :raises AirflowNotFoundException: for an unknown connection.
    """
    await sync_to_async(_import_hook_module, thread_sensitive=False)()  # ``requests``: off the loop
    from airflow.sdk import BaseHook

    from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook

    loop = asyncio.get_running_loop()
    if triggerer_comms() is not None:
        connection = await asyncio.shield(BaseHook.aget_connection(conn_id))
    else:  # ``dags test`` in-line: its in-process supervisor answers ``send`` only (no ``asend``)
        connection = await sync_to_async(BaseHook.get_connection, thread_sensitive=False)(conn_id)
    hook = Bitrix24Hook(bitrix24_conn_id=conn_id, connection=connection, task_sdk=EventLoopTaskSdk(loop=loop))
    settings = hook.get_settings()  # on the loop: masks locally
    if triggerer_comms() is not None:
        await amask_secrets(*settings.secrets)  # and tells the supervisor's masker
    return hook
