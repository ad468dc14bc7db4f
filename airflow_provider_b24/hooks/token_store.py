"""Where the hook keeps rotated OAuth tokens: the Airflow Variable ``bitrix24_token__<conn_id>``.

Airflow 3 tasks cannot write Connections (the Execution API serves them read-only), but they can
write Variables, so the current token pair lives in a Variable as JSON. The connection's own
``access_token`` / ``refresh_token`` are only seeds: once the Variable exists it wins. Airflow masks
Variable values whose name contains ``token``, and every token is also registered with
``mask_secret``. Tasks on workers reach the Variable through the Execution API, triggers in the
triggerer through its supervisor (``GetVariable`` / ``PutVariable``, Airflow 3.1 and 3.3): both end in
the metadata DB, the one component every process of a deployment shares.

Where no Variable API works (a plain script, a unit test without a task runner), writes fall back to
process memory with a warning: the rotated refresh token then dies with the process.

How the store reaches Airflow (Variables, the secrets masker) is a :class:`TaskSdk`: by default the
Task SDK's synchronous API in the calling thread (:class:`SyncTaskSdk`, right for tasks). Triggers pass
one that runs every call on the triggerer's event loop
(:class:`airflow_provider_b24.triggers.task_sdk.EventLoopTaskSdk`): Airflow 3.1's trigger runner
crashes when a trigger's worker thread talks to the supervisor synchronously (apache/airflow#64620).

Guarantees (Bitrix24 refresh tokens are single-use: a refresh returns a new pair and the old refresh
token then gets ``invalid_grant``):

* **within one process** refreshes are serialised by a lock (see :mod:`airflow_provider_b24.client.auth`),
  so concurrent threads never spend the same refresh token twice;
* **across processes on one machine** a file lock in the temp directory, keyed by the connection ID,
  serialises the "re-read the Variable, refresh, save" sequence, so a second worker re-reads the pair
  the first one saved instead of spending a dead refresh token;
* **across machines** (workers on other hosts, the triggerer) two processes can still spend the same
  refresh token at the same moment. The authorization server lets exactly one of them win; the
  loser gets ``invalid_grant`` and then :meth:`AirflowVariableTokenStore.wait_for_newer` re-reads the
  Variable (every ``poll_interval`` s, at most ``adopt_timeout`` s) until the winner's pair appears,
  and adopts it instead of failing. So no task or trigger fails with ``invalid_grant`` as long as
  the winner saves its pair within ``adopt_timeout`` (it does so right after its refresh).

Limits: a winner that dies between receiving the new pair and saving it (or that cannot write the
Variable) loses the only live refresh token: every process then fails with ``invalid_grant`` and the
app must be re-authorised. A Variable changed by hand to an unrelated pair is adopted as is. No
refresh is ever sent on a timer; refreshes happen only on ``expired_token``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from airflow_provider_b24.client.auth import TokenPair
from airflow_provider_b24.client.client import LoggerLike

VARIABLE_PREFIX = "bitrix24_token__"
#: How long a process that lost a refresh race waits for the winner's pair to appear in the Variable.
#: (The winner saves right after its refresh answer: typically well under a second.)
ADOPT_TIMEOUT_S = 10.0
#: How often it re-reads the Variable meanwhile.
ADOPT_POLL_INTERVAL_S = 0.5


def variable_name(conn_id: str) -> str:
    """The Variable holding the token pair of ``conn_id``."""
    return f"{VARIABLE_PREFIX}{conn_id}"


def mask_secrets(*values: str | None) -> None:
    """Register secrets with Airflow's log masker (``airflow.sdk.log.mask_secret``)."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - nothing to register with
        return
    for value in values:
        if value:
            mask_secret(value)


class TaskSdk(Protocol):
    """What the hook and its token store ask of Airflow: Variables and the secrets masker.

    ``get_variable`` returns the stored value, or ``None`` when the Variable does not exist, and
    raises when it cannot be read (no Variable API here, a backend failure).
    """

    def get_variable(self, name: str) -> Any: ...

    def set_variable(self, name: str, value: str, description: str) -> None: ...

    def mask_secrets(self, *values: str | None) -> None: ...


class SyncTaskSdk:
    """The Task SDK's synchronous API, in the calling thread (tasks, scripts, ``dags test``)."""

    def __repr__(self) -> str:
        return "SyncTaskSdk()"

    def get_variable(self, name: str) -> Any:
        from airflow.sdk import Variable

        return Variable.get(name, default=None)

    def set_variable(self, name: str, value: str, description: str) -> None:
        from airflow.sdk import Variable

        Variable.set(name, value, description=description)

    def mask_secrets(self, *values: str | None) -> None:
        mask_secrets(*values)


class AirflowVariableTokenStore:
    """A :class:`~airflow_provider_b24.client.auth.TokenStore` backed by an Airflow Variable.

    :param conn_id: the Bitrix24 connection ID (names the Variable and the lock file).
    :param seed: the pair from the connection, used until the Variable holds one.
    :param logger: where to warn about the memory fallback.
    :param adopt_timeout: seconds :meth:`wait_for_newer` waits for another process's pair.
    :param poll_interval: seconds between its re-reads of the Variable.
    :param clock: monotonic clock (a seam for tests).
    :param sleep: sleep function (a seam for tests).
    :param task_sdk: how Variables are read and written and secrets masked (default
        :class:`SyncTaskSdk`; triggers pass one that runs on the triggerer's event loop).
    """

    def __init__(
        self,
        conn_id: str,
        seed: TokenPair | None,
        logger: LoggerLike | None = None,
        *,
        adopt_timeout: float = ADOPT_TIMEOUT_S,
        poll_interval: float = ADOPT_POLL_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        task_sdk: TaskSdk | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.task_sdk: TaskSdk = task_sdk or SyncTaskSdk()
        self.adopt_timeout = adopt_timeout
        self.poll_interval = poll_interval
        self._clock = clock
        self._sleep = sleep
        self.name = variable_name(conn_id)
        self._seed = seed
        self._memory: TokenPair | None = None
        self._variable_writable = True
        self._variable_readable = True
        self._warned = False
        self._guard = threading.Lock()
        self.log: LoggerLike = logger or logging.getLogger(__name__)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", conn_id)[:40]
        digest = hashlib.sha256(conn_id.encode()).hexdigest()[:12]
        self.lock_path = os.path.join(tempfile.gettempdir(), f"bitrix24-token-{safe}-{digest}.lock")

    def __repr__(self) -> str:
        return f"AirflowVariableTokenStore(variable={self.name!r})"

    # ------------------------------------------------------------------ Variable access
    def _read_variable(self) -> TokenPair | None:
        try:
            raw: Any = self.task_sdk.get_variable(self.name)
        except Exception as exc:  # no API (plain script) or a backend failure: seeds/memory apply
            self.log.debug("Bitrix24 token Variable %s not readable (%s)", self.name, type(exc).__name__)
            self._variable_readable = False
            return None
        self._variable_readable = True
        if raw in (None, ""):
            return None
        try:
            data = json.loads(raw) if isinstance(raw, str) else raw
            pair = TokenPair.from_dict(data)
        except (TypeError, ValueError, AttributeError):
            self.log.warning("Bitrix24 token Variable %s does not hold a token pair; ignoring it", self.name)
            return None
        if not pair.refresh_token and not pair.access_token:
            return None
        return pair

    def _write_variable(self, pair: TokenPair) -> bool:
        try:
            text = json.dumps(pair.to_dict())
            self.task_sdk.set_variable(self.name, text, "Bitrix24 OAuth token pair (rotated)")
        except Exception:  # no Variable API here (plain script, unit test) or the backend refused
            return False
        return True

    # ------------------------------------------------------------------ TokenStore protocol
    def load(self) -> TokenPair | None:
        """The newest pair: the Variable, else this process's memory, else the connection's seed."""
        with self._guard:
            memory, writable = self._memory, self._variable_writable
        pair = None
        if writable or memory is None:
            pair = self._read_variable()
        pair = pair or memory or self._seed
        if pair:
            self.task_sdk.mask_secrets(pair.access_token, pair.refresh_token)
        return pair

    def save(self, pair: TokenPair) -> None:
        """Keep the new pair in memory and write it to the Variable (warn when that is impossible)."""
        self.task_sdk.mask_secrets(pair.access_token, pair.refresh_token)
        with self._guard:
            self._memory = pair
        if self._write_variable(pair):
            with self._guard:
                self._variable_writable = True
            return
        with self._guard:
            self._variable_writable = False
            warned, self._warned = self._warned, True
        if not warned:
            self.log.warning(
                "Bitrix24 rotated OAuth tokens could not be written to the Variable %s (no Variable API "
                "here); they are kept in memory only and are lost when this process ends",
                self.name,
            )

    def wait_for_newer(self, spent: TokenPair) -> TokenPair | None:
        """After ``invalid_grant``: the pair another process saved in place of ``spent``, or ``None``.

        Another worker or the triggerer (possibly on another machine) spent the same refresh token
        first; it saves the new pair right after its refresh. Re-read the Variable every
        ``poll_interval`` seconds for at most ``adopt_timeout`` seconds and return the first pair
        whose refresh token differs from ``spent``'s. Without a Variable API (a plain script) there is
        nothing to wait for: ``None`` at once.
        """
        deadline = self._clock() + self.adopt_timeout
        while True:
            pair = self._read_variable()
            if not self._variable_readable:
                return None  # no shared store here (a plain script): nobody can hand a pair over
            if pair is not None and pair.refresh_token and pair.refresh_token != spent.refresh_token:
                self.task_sdk.mask_secrets(pair.access_token, pair.refresh_token)
                with self._guard:
                    self._memory = pair
                self.log.info(
                    "Bitrix24 refresh token of %s was already rotated by another process; "
                    "using the pair it saved in the Variable %s",
                    self.conn_id,
                    self.name,
                )
                return pair
            if self._clock() >= deadline:
                return None
            self._sleep(self.poll_interval)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """A cross-process file lock (same machine) around "re-read, refresh, save"."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: in-process lock only
            yield
            return
        with open(self.lock_path, "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


__all__ = [
    "VARIABLE_PREFIX",
    "AirflowVariableTokenStore",
    "SyncTaskSdk",
    "TaskSdk",
    "mask_secrets",
    "variable_name",
]
