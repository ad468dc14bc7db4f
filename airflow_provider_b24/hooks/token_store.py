"""Where the hook keeps rotated OAuth tokens: the Airflow Variable ``bitrix24_token__<conn_id>``.

Airflow 3 tasks cannot write Connections (the Execution API serves them read-only), but they can
write Variables, so the current token pair lives in a Variable as JSON. The connection's own
``access_token`` / ``refresh_token`` are only seeds: once the Variable exists it wins. Airflow masks
Variable values whose name contains ``token``, and every token is also registered with
``mask_secret``.

Where no Variable API works (a plain script, a unit test without a task runner), writes fall back to
process memory with a warning: the rotated refresh token then dies with the process.

Guarantees:

* **within one process** refreshes are serialised by a lock (see :mod:`airflow_provider_b24.client.auth`),
  so concurrent threads never spend the same refresh token twice;
* **across processes on one machine** a file lock in the temp directory, keyed by the connection ID,
  serialises the "re-read the Variable, refresh, save" sequence, so a second worker re-reads the pair
  the first one saved instead of spending a dead refresh token;
* **across machines** nothing can be guaranteed: two workers on different hosts that refresh at the
  same moment can still race (one ends with ``invalid_grant``). Serialise OAuth tasks with an Airflow
  pool of one slot, or prefer webhook auth for server-to-server DAGs.
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
from collections.abc import Iterator
from typing import Any

from airflow_provider_b24.client.auth import TokenPair
from airflow_provider_b24.client.client import LoggerLike

VARIABLE_PREFIX = "bitrix24_token__"


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


class AirflowVariableTokenStore:
    """A :class:`~airflow_provider_b24.client.auth.TokenStore` backed by an Airflow Variable.

    :param conn_id: the Bitrix24 connection ID (names the Variable and the lock file).
    :param seed: the pair from the connection, used until the Variable holds one.
    :param logger: where to warn about the memory fallback.
    """

    def __init__(self, conn_id: str, seed: TokenPair | None, logger: LoggerLike | None = None) -> None:
        self.conn_id = conn_id
        self.name = variable_name(conn_id)
        self._seed = seed
        self._memory: TokenPair | None = None
        self._variable_writable = True
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
            from airflow.sdk import Variable

            raw: Any = Variable.get(self.name, default=None)
        except Exception as exc:  # no API (plain script) or a backend failure: seeds/memory apply
            self.log.debug("Bitrix24 token Variable %s not readable (%s)", self.name, type(exc).__name__)
            return None
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
            from airflow.sdk import Variable

            text = json.dumps(pair.to_dict())
            Variable.set(self.name, text, description="Bitrix24 OAuth token pair (rotated)")
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
            mask_secrets(pair.access_token, pair.refresh_token)
        return pair

    def save(self, pair: TokenPair) -> None:
        """Keep the new pair in memory and write it to the Variable (warn when that is impossible)."""
        mask_secrets(pair.access_token, pair.refresh_token)
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


__all__ = ["VARIABLE_PREFIX", "AirflowVariableTokenStore", "mask_secrets", "variable_name"]
