"""The triggerer side of shared polls: one poller per event loop and connection, polling for every trigger.

Every :class:`~airflow_provider_b24.triggers.activity.Bitrix24ActivityTrigger` running in one
triggerer (one event loop) with the same connection joins one :class:`SharedActivityPoller`. The
poller keeps one hook (one client, so one rate limiter) for the connection and polls in a worker
thread: each poll fetches the union of the members' IDs with the union of their fields (one HTTP
request per 2,500 IDs) and puts every member's own answer on its queue as a :class:`PollReport`.
Each trigger reads its reports in its own ``run()``, logs them (in its own task log) and fires its
one event. The pure logic (unions, splitting, due times, whose error) is
:mod:`airflow_provider_b24.activities.shared_poll`.

The worker thread only does HTTP. The hook is opened on the event loop
(:func:`~airflow_provider_b24.triggers.task_sdk.open_hook`: the connection from ``aget_connection``)
the first time a poll needs it, and whatever the hook's thread still needs from Airflow (OAuth tokens
in their Variable, the secrets masker) runs on the loop too: Airflow 3.1's trigger runner crashes on
synchronous Task SDK calls from worker threads (apache/airflow#64620).

The triggerer imports this module on its event loop, so it imports nothing heavy: the domain module
(which imports the client and ``requests``) is imported in a worker thread when the first trigger
joins.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import itertools
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from asgiref.sync import sync_to_async

if TYPE_CHECKING:
    from airflow_provider_b24.activities.shared_poll import (
        MemberAnswer,
        MemberSpec,
        PollOutcome,
        PollSchedule,
    )

__all__ = ["PollReport", "PollerMember", "SharedActivityPoller", "join_shared_poll"]

log = logging.getLogger(__name__)

_DOMAIN_MODULE = "airflow_provider_b24.activities.shared_poll"


_loaded: dict[str, ModuleType] = {}


def _monotonic() -> float:
    """The poller's clock (a seam: tests move it forward instead of sleeping)."""
    return time.monotonic()


async def _wait(wake: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less if ``wake`` is set (a member joined or left); a seam like ``_monotonic``."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), seconds)


async def _load_domain() -> ModuleType:
    """The domain module, imported in a worker thread the first time (it imports the client).

    (Not ``sys.modules``: while another thread imports it, that holds a half-initialised module.)
    """
    module = _loaded.get(_DOMAIN_MODULE)
    if module is None:
        module = await sync_to_async(importlib.import_module, thread_sensitive=False)(_DOMAIN_MODULE)
        _loaded[_DOMAIN_MODULE] = module
    return module


@dataclass
class PollReport:
    """What one shared poll told one trigger.

    :ivar kind: ``"answer"`` (``answer`` holds its rows and status), ``"retry"`` (a transient
        ``error``; the next poll is ``wait`` seconds away at the earliest) or ``"error"`` (a final
        ``error``: this trigger is done polling).
    :ivar members: triggers that shared the poll; ``requests``: HTTP requests it used.
    """

    kind: Literal["answer", "retry", "error"]
    answer: MemberAnswer | None = None
    error: BaseException | None = None
    wait: float = 0.0
    members: int = 0
    requests: int = 0


@dataclass(eq=False)
class PollerMember:
    """One trigger in a shared poll: its arguments as given, and the queue of its reports."""

    key: int
    activity_ids: Any
    select: Any
    until: str
    interval: float
    reports: asyncio.Queue[PollReport] = field(default_factory=asyncio.Queue)
    #: validated arguments (set in the worker thread on its first poll).
    spec: MemberSpec | None = None


#: loop -> connection ID -> its poller (an event loop that is gone takes its pollers with it).
_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SharedActivityPoller]] = (
    weakref.WeakKeyDictionary()
)
_keys = itertools.count(1)


async def join_shared_poll(
    *,
    bitrix24_conn_id: str,
    activity_ids: Any,
    select: Any,
    until: str,
    poll_interval: float,
    first_poll_delay: float,
) -> tuple[SharedActivityPoller, PollerMember]:
    """Join (or start) the shared poll of ``bitrix24_conn_id`` on the running event loop.

    The member is first polled no earlier than ``first_poll_delay`` seconds from now. Call
    :meth:`SharedActivityPoller.leave` when done (also on cancellation).
    """
    domain = await _load_domain()
    loop = asyncio.get_running_loop()
    per_loop = _POLLERS.setdefault(loop, {})
    poller = per_loop.get(bitrix24_conn_id)
    if poller is None or poller.closed:
        poller = per_loop[bitrix24_conn_id] = SharedActivityPoller(
            bitrix24_conn_id=bitrix24_conn_id, loop=loop, schedule=domain.PollSchedule()
        )
    member = PollerMember(
        key=next(_keys),
        activity_ids=activity_ids,
        select=select,
        until=until,
        interval=float(poll_interval),
    )
    poller.join(member, ready_at=_monotonic() + max(0.0, float(first_poll_delay)))
    return poller, member


def pollers_of(loop: asyncio.AbstractEventLoop) -> dict[str, SharedActivityPoller]:
    """The live pollers of ``loop`` by connection ID (tests, diagnostics)."""
    return dict(_POLLERS.get(loop, {}))


class SharedActivityPoller:
    """Polls Bitrix24 for every member trigger of one connection on one event loop.

    Members join and leave at any time; the poll runs as an asyncio task while there are members
    and stops (closing its hook) when the last one leaves. Scheduling is
    :class:`~airflow_provider_b24.activities.shared_poll.PollSchedule` (a member is never polled
    before its ``first_poll_delay``; polls run at the smallest member interval, no faster than the
    client's rate limit). Only one poll is in flight at a time, in a worker thread
    (``sync_to_async(thread_sensitive=False)``); the hook is opened on the event loop when a poll
    first needs it (:meth:`_open_hook`), so no synchronous Task SDK call is made from the thread.

    :param bitrix24_conn_id: the connection every member uses.
    :param loop: the event loop the members run on.
    :param schedule: an empty ``PollSchedule``.
    """

    def __init__(
        self, *, bitrix24_conn_id: str, loop: asyncio.AbstractEventLoop, schedule: PollSchedule
    ) -> None:
        self.bitrix24_conn_id = bitrix24_conn_id
        self.loop = loop
        self.schedule = schedule
        self.members: dict[int, PollerMember] = {}
        self.closed = False
        self.polls = 0
        self.requests = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._hook: Any = None
        self._lock = threading.Lock()
        #: taken by worker threads only (never by the loop, which they wait for while holding it).
        self._opening = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"SharedActivityPoller(bitrix24_conn_id={self.bitrix24_conn_id!r}, members={len(self.members)}, "
            f"polls={self.polls}, requests={self.requests})"
        )

    # -- members (event loop) -----------------------------------------------------------------------

    def join(self, member: PollerMember, *, ready_at: float) -> None:
        """Add ``member``, first polled at loop time ``ready_at`` at the earliest."""
        if self.closed:
            raise RuntimeError(f"{self!r} is closed")
        self.members[member.key] = member
        self.schedule.join(member.key, ready_at=ready_at, interval=member.interval)
        if self._task is None:
            # A context of its own: the poller's log lines are the triggerer's, not one trigger's.
            self._task = self.loop.create_task(
                self._run(),
                name=f"bitrix24-shared-poll-{self.bitrix24_conn_id}",
                context=contextvars.Context(),
            )
        self._wake.set()

    def leave(self, member: PollerMember) -> None:
        """Remove ``member`` (idempotent); the last member out stops the poller and closes its hook."""
        self._drop(member.key)
        if not self.members and not self.closed:
            self._shut()

    def _drop(self, key: int) -> None:
        self.members.pop(key, None)
        self.schedule.leave(key)
        self._wake.set()

    def _shut(self) -> None:
        """Stop polling: forget this poller, stop its task, close the hook (after a poll in flight)."""
        self.closed = True
        per_loop = _POLLERS.get(self.loop)
        if per_loop is not None and per_loop.get(self.bitrix24_conn_id) is self:
            del per_loop[self.bitrix24_conn_id]
        task, self._task = self._task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        self._close_hook()

    # -- the poll loop (event loop) -----------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while self.members and not self.closed:
                at = self.schedule.next_poll_at()
                now = _monotonic()
                if at is None:
                    return
                if at > now:
                    self._wake.clear()
                    await _wait(self._wake, at - now)
                    continue
                await self._poll_once(now)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # pragma: no cover - a bug: end every member instead of hanging them
            log.exception("Bitrix24 shared poll of %r failed", self.bitrix24_conn_id)
            for member in list(self.members.values()):
                member.reports.put_nowait(PollReport(kind="error", error=error))
                self._drop(member.key)
        finally:
            # Also when the loop itself is torn down (its members are being cancelled too).
            if not self.closed:
                self._shut()

    async def _poll_once(self, started: float) -> None:
        keys = self.schedule.take(started)
        batch = {key: self.members[key] for key in keys if key in self.members}
        if not batch:  # pragma: no cover - next_poll_at() only returns when someone is ready
            self.schedule.polled([], started_at=started)
            return
        outcome, invalid, rate = await sync_to_async(self._poll_in_thread, thread_sensitive=False)(batch)
        self.polls += 1
        self.requests += outcome.requests
        self._dispatch(batch, outcome, invalid, started=started, rate=rate)

    def _dispatch(
        self,
        batch: dict[int, PollerMember],
        outcome: PollOutcome,
        invalid: dict[int, BaseException],
        *,
        started: float,
        rate: float,
    ) -> None:
        from airflow_provider_b24.exceptions import ErrorOutcome, error_outcome, seconds_until_retry

        shared = len(batch)
        retry_wait: float | None = None
        if outcome.error is not None and error_outcome(outcome.error) is ErrorOutcome.RETRY:
            retry_wait = seconds_until_retry(outcome.error, self.schedule.cadence())
        answered = []
        for key, member in batch.items():
            if key not in self.members:
                continue  # left while the poll was in flight
            error = invalid.get(key) or outcome.failed.get(key)
            answer = outcome.answers.get(key)
            if error is None and answer is None and outcome.error is not None and retry_wait is None:
                error = outcome.error  # the connection's error: every member's
            if error is not None:
                report = PollReport(kind="error", error=error, members=shared, requests=outcome.requests)
            elif answer is not None:
                answered.append(key)
                report = PollReport(kind="answer", answer=answer, members=shared, requests=outcome.requests)
            else:
                assert outcome.error is not None and retry_wait is not None
                report = PollReport(
                    kind="retry",
                    error=outcome.error,
                    wait=retry_wait,
                    members=shared,
                    requests=outcome.requests,
                )
            member.reports.put_nowait(report)
            if report.kind == "error" or (answer is not None and answer.status.done):
                self._drop(key)
        self.schedule.polled(answered, started_at=started, requests=outcome.requests, rate=rate)
        if retry_wait is not None:
            self.schedule.hold(_monotonic() + retry_wait)
        elif outcome.error is not None:
            # A final connection-wide error: build the hook anew for members that join later.
            self._close_hook()

    # -- the worker thread ------------------------------------------------------------------------

    def _poll_in_thread(
        self, batch: dict[int, PollerMember]
    ) -> tuple[PollOutcome, dict[int, BaseException], float]:
        """One shared poll (worker thread): validate new members, build the hook if needed, fetch."""
        try:
            return self._poll_sync(batch)
        finally:
            if self.closed:  # the last member left while this poll was in flight
                self._close_hook()

    def _poll_sync(
        self, batch: dict[int, PollerMember]
    ) -> tuple[PollOutcome, dict[int, BaseException], float]:
        from airflow_provider_b24.activities import fetch_activities
        from airflow_provider_b24.exceptions import ErrorOutcome, error_outcome

        domain = _loaded[_DOMAIN_MODULE]
        invalid: dict[int, BaseException] = {}
        specs: dict[int, MemberSpec] = {}
        for key, member in batch.items():
            if member.spec is None:
                try:
                    member.spec = domain.prepare_member(member.activity_ids, member.select, member.until)
                except Exception as error:
                    invalid[key] = error
                    continue
            specs[key] = member.spec
        if not specs:
            return domain.PollOutcome(), invalid, 0.0

        def fetch(ids: list[int], select: list[str]) -> Any:
            if not ids:
                return fetch_activities(None, [])  # type: ignore[arg-type]  # no request for no IDs
            return fetch_activities(self._open_hook(), ids, select=select)

        outcome = domain.poll_members(
            fetch, specs, is_final=lambda error: error_outcome(error) is not ErrorOutcome.RETRY
        )
        return outcome, invalid, _rate_of(self._hook)

    def _open_hook(self) -> Any:
        """The poller's hook (worker thread); the first call opens it on the event loop and waits.

        :func:`~airflow_provider_b24.triggers.task_sdk.open_hook` resolves the connection with
        ``aget_connection`` there; its errors (an unknown connection, a bad field) are raised here,
        inside the poll, and handled like any error of the fetch (connection-wide: every member's).
        """
        from airflow_provider_b24.triggers.task_sdk import EventLoopTaskSdk, open_hook

        with self._opening:
            with self._lock:
                hook = self._hook
            if hook is None:
                hook = EventLoopTaskSdk(loop=self.loop).call(open_hook(self.bitrix24_conn_id))
                with self._lock:
                    self._hook = hook
            return hook

    def _close_hook(self) -> None:
        """Close the hook (a poll still in flight then fails harmlessly: nobody awaits its answer)."""
        with self._lock:
            hook, self._hook = self._hook, None
        _close(hook)


def _rate_of(hook: Any) -> float:
    """The client's leaky-bucket drain rate (requests/s) from the hook's connection, 0 if unknown."""
    try:
        return float(hook.get_settings().config.rate_limit)
    except Exception:
        return 0.0


def _close(hook: Any) -> None:
    """Close a hook's HTTP session (quick: no I/O beyond closing sockets)."""
    if hook is None:
        return
    try:
        hook.close()
    except Exception:  # pragma: no cover - best effort
        log.debug("closing the Bitrix24 hook failed", exc_info=True)
