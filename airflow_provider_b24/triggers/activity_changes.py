"""Event-driven scheduling on Bitrix24 CRM activity changes: an asset watcher's trigger.

Use it in an :class:`~airflow.sdk.AssetWatcher`; each event becomes an asset event and starts a run
of the DAGs scheduled on the asset::

    from airflow.sdk import Asset, AssetWatcher
    from airflow_provider_b24.triggers.activity_changes import Bitrix24ActivityChangesTrigger

    trigger = Bitrix24ActivityChangesTrigger(bitrix24_conn_id="bitrix24_default", poll_interval=30.0)
    activities = Asset("bitrix24_activities", watchers=[AssetWatcher(name="b24_changes", trigger=trigger)])

Event payload (``triggering_asset_events[asset][i].extra["payload"]``): ``{"ids": [...],
"deleted_ids": [...], "source": "poll" | "offline_events", "portal": "<host>", "cursor": {...}}``,
at most 2,500 IDs per event. The cursor/queue logic is :mod:`airflow_provider_b24.changes`; this
module only drives it (sync hook work in a worker thread) and keeps its state durable
(:mod:`.change_cursor`).

Delivery is **at least once**: the durable cursor moves only after the event was yielded (and
:data:`COMMIT_DELAY_S` later, so the triggerer has stored the event); a restart may repeat the last
events, never lose one. The trigger never yields an error event (every event starts a DAG run,
apache/airflow#54804): transient errors, rate limits and 429 waits are waited out inside ``run()``;
a permanent error (bad credentials, missing scope, unknown connection, a webhook asked for offline
events) is logged and raised after :attr:`Bitrix24ActivityChangesTrigger.permanent_error_pause`
seconds (the triggerer restarts a failed watcher at once; the pause keeps it off the portal).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from asgiref.sync import sync_to_async

from airflow_provider_b24.changes.arguments import (
    config_error,
    feed_identity,
    validate_filter,
    validate_source,
    validate_start_from,
)
from airflow_provider_b24.triggers.change_cursor import CursorStore, choose_store

if TYPE_CHECKING:
    from airflow_provider_b24.changes.feed import ChangeFeed, FeedPoll
    from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook

# The triggerer imports this module and builds the trigger on its event loop, so the module stays
# light: the REST client (``requests``), the feeds and the hook are imported in the worker thread.

T = TypeVar("T")

#: Seconds between yielding an event and moving the durable cursor past it: the triggerer sends
#: events to its supervisor about once a second, which then writes them to the metadata DB.
COMMIT_DELAY_S: float = 5.0
#: A summary line (polls, HTTP requests, IDs delivered) every this many polls.
STATS_EVERY_POLLS: int = 20
#: Longest wait between attempts after transient errors (seconds).
MAX_BACKOFF_S: float = 300.0
#: Log at most this many IDs per line.
_LOG_IDS: Final = 10


def _saver(store: CursorStore, state: dict[str, Any]) -> Callable[[], Awaitable[None]]:
    """A retryable "save this state" (bound now: the loop moves on)."""
    return lambda: store.save(state)


def _ids(ids: list[int]) -> str:
    head = ", ".join(str(i) for i in ids[:_LOG_IDS])
    return f"[{head}{f' ... +{len(ids) - _LOG_IDS}' if len(ids) > _LOG_IDS else ''}]"


class Bitrix24ActivityChangesTrigger(BaseEventTrigger):
    """Watch a portal's CRM activities; one event per ≤ 2,500 changed IDs.

    Every keyword argument is JSON-plain (Airflow hashes them to identify the watcher): the
    connection **ID**, never its secrets.

    :param bitrix24_conn_id: the Airflow connection of type ``bitrix24``.
    :param poll_interval: seconds between polls (an idle poll is one HTTP request).
    :param source: ``"poll"`` (any connection: ``crm.activity.list`` by ``LAST_UPDATED``; no
        deletions) or ``"offline_events"`` (OAuth application connections: the offline event queue;
        deletions in ``deleted_ids``).
    :param filter: a ``crm.activity.list`` filter ANDed in, e.g. ``{"TYPE_ID": 2}`` (calls only).
    :param start_from: ``source="poll"`` only: an ISO 8601 time to start from when the watcher has
        no stored cursor yet; ``None`` (default) starts at the portal's "now" (no history).
    """

    #: Seconds between logging a permanent error and raising it (see the module docstring).
    permanent_error_pause: float = 60.0

    def __init__(
        self,
        *,
        bitrix24_conn_id: str = "bitrix24_default",
        poll_interval: float = 30.0,
        source: str = "poll",
        filter: dict[str, Any] | None = None,
        start_from: str | None = None,
    ) -> None:
        super().__init__()
        # Checked here so a wrong DAG fails when it is parsed, not hours later in the triggerer.
        if not isinstance(bitrix24_conn_id, str) or not bitrix24_conn_id.strip():
            raise config_error(f"bitrix24_conn_id must be a connection ID, got {bitrix24_conn_id!r}")
        if (
            isinstance(poll_interval, bool)
            or not isinstance(poll_interval, int | float)
            or poll_interval <= 0
        ):
            raise config_error(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
        self.bitrix24_conn_id = bitrix24_conn_id
        self.poll_interval = float(poll_interval)
        self.source = validate_source(source)
        self.filter = validate_filter(filter)
        self.start_from = validate_start_from(start_from)
        if self.start_from is not None and self.source != "poll":
            raise config_error(
                "start_from applies to source='poll' only "
                "(the offline queue starts when the handlers are bound)"
            )
        #: Where the cursor lives; chosen in ``run()`` unless set beforehand (tests, scripts).
        self.cursor_store: CursorStore | None = None
        self._hook: Bitrix24Hook | None = None
        self._feed: ChangeFeed | None = None
        self._portal = ""
        self._stats = [0, 0, 0]  # polls, HTTP requests, IDs since the last summary line

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and JSON-plain kwargs (the watcher's identity: keep them stable)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "bitrix24_conn_id": self.bitrix24_conn_id,
                "poll_interval": self.poll_interval,
                "source": self.source,
                "filter": self.filter,
                "start_from": self.start_from,
            },
        )

    @property
    def identity(self) -> str:
        """Digest of connection, source and filter: names the durable cursor."""
        return feed_identity(conn_id=self.bitrix24_conn_id, source=self.source, filter=self.filter)

    # -- sync work (worker thread) ------------------------------------------------------------------

    @staticmethod
    def _import_heavy_modules() -> None:
        """Import the hook, client and feeds (``requests``...): in a worker thread, off the event loop."""
        import airflow_provider_b24.changes.sources
        import airflow_provider_b24.hooks.bitrix24  # noqa: F401

    async def _prepare(self) -> None:
        """Resolve the connection and build the hook and the feed, talking to Airflow from the event loop.

        Airflow 3.1.8's triggerer crashes (the whole trigger runner: "Response read out of order!")
        when a trigger calls the Task SDK synchronously from a worker thread (``get_connection``,
        ``mask_secret``, ``Variable.get``) while the runner talks to its supervisor
        (apache/airflow#64620, fixed by apache/airflow#66412 in 3.3). So the hook is opened by
        :func:`~airflow_provider_b24.triggers.task_sdk.open_hook` here, on the event loop (connection
        from ``aget_connection``, settings read and masked); the worker thread only does HTTP to
        Bitrix24 (OAuth token rotation reaches its Variable through the loop as well).
        """
        from airflow_provider_b24.triggers.task_sdk import open_hook

        await sync_to_async(self._import_heavy_modules, thread_sensitive=False)()
        from airflow_provider_b24.changes.offline import WRONG_AUTH_TYPE_HELP
        from airflow_provider_b24.changes.sources import make_feed

        if self._hook is None:
            self._hook = await open_hook(self.bitrix24_conn_id)
        settings = self._hook.get_settings()
        if self.source == "offline_events" and settings.auth_type != "oauth":
            raise config_error(f"connection {self.bitrix24_conn_id!r}: {WRONG_AUTH_TYPE_HELP}")
        self._portal = urlsplit(settings.portal.base_url).netloc
        self._feed = make_feed(self._hook, source=self.source, filter=self.filter, start_from=self.start_from)

    def _close(self) -> None:
        hook, self._hook, self._feed = self._hook, None, None
        if hook is not None:
            try:
                hook.close()
            except Exception:  # pragma: no cover - best effort
                self.log.debug("closing the Bitrix24 hook failed", exc_info=True)

    def _start(self) -> dict[str, Any]:
        assert self._feed is not None
        return self._feed.start()

    def _poll(self, state: dict[str, Any]) -> FeedPoll:
        assert self._feed is not None
        return self._feed.poll(state)

    def _commit(self, poll: FeedPoll) -> int:
        assert self._feed is not None
        return self._feed.commit(poll)

    # -- failure policy -----------------------------------------------------------------------------

    def _wait_after(self, error: BaseException, failures: int) -> float:
        """Seconds before the next attempt: exponential from ``poll_interval`` (capped), or until a
        429's reset time (:func:`~airflow_provider_b24.exceptions.seconds_until_retry`)."""
        from airflow_provider_b24.exceptions import seconds_until_retry

        backoff = min(max(self.poll_interval, MAX_BACKOFF_S), self.poll_interval * 2 ** min(failures - 1, 16))
        return seconds_until_retry(error, backoff)

    async def _attempt(self, what: str, func: Callable[[], Awaitable[T]]) -> T:
        """``await func()`` until it succeeds; wait out transient errors, raise permanent ones."""
        failures = 0
        while True:
            try:
                return await func()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                from airflow_provider_b24.exceptions import ErrorOutcome, error_outcome  # loaded by now

                # The shared failure policy: only transient Bitrix24 errors are waited out. Permanent
                # ones and non-Bitrix24 errors (an unknown connection, a bug) end the watcher.
                if error_outcome(error) is not ErrorOutcome.RETRY:
                    self.log.error(
                        "Bitrix24 change feed (connection %r) cannot %s: %s: %s. Raising in %.0f s.",
                        self.bitrix24_conn_id,
                        what,
                        type(error).__name__,
                        error,
                        self.permanent_error_pause,
                    )
                    self._close()
                    await asyncio.sleep(self.permanent_error_pause)
                    raise
                failures += 1
                wait = self._wait_after(error, failures)
                self.log.warning(
                    "Bitrix24 change feed: %s failed (%s: %s); attempt %d, trying again in %.1f s",
                    what,
                    type(error).__name__,
                    error,
                    failures,
                    wait,
                )
                await asyncio.sleep(wait)

    def _in_thread(self, func: Callable[..., T], *args: Any) -> Callable[[], Awaitable[T]]:
        return lambda: sync_to_async(func, thread_sensitive=False)(*args)

    # -- the loop ------------------------------------------------------------------------------------

    def _count(self, poll: FeedPoll) -> None:
        """Every :data:`STATS_EVERY_POLLS` polls, one log line: polls, HTTP requests, IDs delivered."""
        stats = self._stats
        stats[0] += 1
        stats[1] += poll.requests
        stats[2] += sum(len(c) for c in poll.changes)
        if stats[0] >= STATS_EVERY_POLLS:
            self.log.info(
                "Bitrix24 change feed: %d polls, %d HTTP requests, %d changed or deleted IDs delivered",
                *stats,
            )
            self._stats = [0, 0, 0]

    async def _initial_state(self, store: CursorStore) -> dict[str, Any]:
        stored = await self._attempt("read its cursor", store.load)
        if stored is not None and stored.get("source") == self.source:
            self.log.info("Bitrix24 change feed resumes from %s: %s", store.description, stored)
            return stored
        state = await self._attempt("start", self._in_thread(self._start))
        await self._attempt("store its cursor", _saver(store, state))
        self.log.info(
            "Bitrix24 change feed starts (no stored cursor): %s, kept in %s", state, store.description
        )
        return state

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll forever; yield one event per ≤ 2,500 changed IDs (never an error event)."""
        try:
            await self._attempt("read its connection", self._prepare)
            store = self.cursor_store
            if store is None:
                store = await choose_store(
                    getattr(self, "asset_state_store", None),
                    conn_id=self.bitrix24_conn_id,
                    identity=self.identity,
                    log=self.log,
                )
                self.cursor_store = store
            state = await self._initial_state(store)
            unconfirmed: deque[tuple[float, FeedPoll]] = deque()
            loop = asyncio.get_running_loop()
            while True:
                # Confirm polls whose events were yielded at least COMMIT_DELAY_S ago. A poll that
                # holds portal reservations is confirmed before the next poll (waiting if needed).
                while unconfirmed and (unconfirmed[0][0] <= loop.time() or unconfirmed[0][1].commit_token):
                    due, done = unconfirmed[0]
                    if due > loop.time():
                        await asyncio.sleep(due - loop.time())
                    await self._attempt("confirm delivered changes", self._in_thread(self._commit, done))
                    await self._attempt("store its cursor", _saver(store, done.state))
                    unconfirmed.popleft()
                poll = await self._attempt("poll", self._in_thread(self._poll, state))
                self._count(poll)
                if poll.reserved is not None:
                    await self._attempt("store its reservations", _saver(store, poll.reserved))
                for changes in poll.changes:
                    self.log.info(
                        "Bitrix24 activities changed: %d %s, %d deleted %s (%d requests)",
                        len(changes.ids),
                        _ids(changes.ids),
                        len(changes.deleted_ids),
                        _ids(changes.deleted_ids),
                        poll.requests,
                    )
                    yield TriggerEvent(
                        changes.payload(source=self.source, portal=self._portal, cursor=poll.cursor)
                    )
                state = poll.state
                if poll.changes or poll.commit_token:
                    unconfirmed.append((loop.time() + COMMIT_DELAY_S, poll))
                if poll.more:
                    continue  # a backlog: no pause
                await asyncio.sleep(self.poll_interval)
        finally:
            # Also on cancellation (triggerer stopping, watcher removed). Unconfirmed polls stay
            # unconfirmed: after a restart their changes come again (at least once).
            self._close()
