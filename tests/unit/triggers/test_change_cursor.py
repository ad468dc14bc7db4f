"""The watcher's Variable cursor store talks to the triggerer's supervisor with ``asend`` (Airflow 3.1/3.2).

In a triggerer, ``task_runner.SUPERVISOR_COMMS`` is the runner's channel; the store must use its async
``asend`` on the event loop (never the Task SDK's synchronous ``Variable`` API from a worker thread:
apache/airflow#64620). A fake channel records the messages and answers like the supervisor does.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.sdk.exceptions import ErrorType
from airflow.sdk.execution_time import task_runner
from airflow.sdk.execution_time.comms import ErrorResponse, GetVariable, PutVariable, VariableResult

from airflow_provider_b24.triggers.change_cursor import VariableCursorStore


class FakeChannel:
    """The supervisor channel: Variables in a dict, every message recorded."""

    def __init__(self) -> None:
        self.variables: dict[str, str] = {}
        self.messages: list[Any] = []

    async def asend(self, msg: Any) -> Any:
        self.messages.append(msg)
        if isinstance(msg, GetVariable):
            if msg.key not in self.variables:
                return ErrorResponse(error=ErrorType.VARIABLE_NOT_FOUND, detail={"key": msg.key})
            return VariableResult(key=msg.key, value=self.variables[msg.key])
        if isinstance(msg, PutVariable):
            self.variables[msg.key] = str(msg.value)
            return None
        raise AssertionError(f"unexpected message {msg!r}")

    def send(self, msg: Any) -> Any:  # the synchronous path must not be used
        raise AssertionError(f"synchronous send of {msg!r}")


@pytest.fixture
def channel(monkeypatch: pytest.MonkeyPatch) -> FakeChannel:
    fake = FakeChannel()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", fake, raising=False)
    return fake


@pytest.mark.asyncio
async def test_load_save_through_the_supervisor_channel(channel: FakeChannel) -> None:
    store = VariableCursorStore("bitrix24_changes__b24__abc")
    assert await store.load() is None  # VARIABLE_NOT_FOUND: no cursor yet
    state = {"source": "poll", "last_updated": "2026-12-01T17:03:03+03:00", "ids": [17, 42]}
    await store.save(state)
    assert json.loads(channel.variables["bitrix24_changes__b24__abc"]) == state
    assert await store.load() == state
    put = next(m for m in channel.messages if isinstance(m, PutVariable))
    assert put.description == "Bitrix24 change feed cursor (written by the triggerer)"


@pytest.mark.asyncio
async def test_other_errors_are_raised_for_the_trigger_to_wait_out(
    channel: FakeChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(msg: Any) -> Any:
        return ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status_code": 500})

    monkeypatch.setattr(channel, "asend", failing)
    with pytest.raises(RuntimeError, match="reading the Airflow Variable 'v' failed"):
        await VariableCursorStore("v").load()
    with pytest.raises(RuntimeError, match="writing the Airflow Variable 'v' failed"):
        await VariableCursorStore("v").save({"source": "poll"})


@pytest.mark.asyncio
async def test_a_stored_value_that_is_not_a_cursor_is_refused(channel: FakeChannel) -> None:
    channel.variables["v"] = '["not", "an", "object"]'
    with pytest.raises(ValueError, match="does not hold a JSON object"):
        await VariableCursorStore("v").load()
