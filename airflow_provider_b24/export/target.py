"""Where an export goes: local paths, ``file://`` URLs and object storage, written atomically.

:class:`AtomicTarget` writes to a hidden temporary sibling (``.<name>.tmp-<uuid>``) and renames it
over ``path`` only on success: a failed or killed export never leaves a partial file at ``path``, and
a re-run replaces the file. No Airflow here (layer 2): object storage paths are duck-typed
(:class:`RemotePath`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path, PurePath
from types import TracebackType
from typing import IO, Any, Final, Protocol, cast, runtime_checkable
from urllib.parse import urlsplit
from urllib.request import url2pathname

from airflow_provider_b24.export.errors import ExportArgumentError

__all__ = ["AtomicTarget", "RemotePath", "classify_path", "is_local_path", "local_path"]

log = logging.getLogger(__name__)


@runtime_checkable
class RemotePath(Protocol):
    """The part of ``airflow.sdk.ObjectStoragePath`` (a ``UPath``) the export uses."""

    @property
    def name(self) -> str: ...

    def with_name(self, name: str) -> Any: ...

    def open(self, mode: str = ...) -> Any: ...

    def rename(self, target: Any) -> Any: ...

    def unlink(self, missing_ok: bool = ...) -> None: ...


_LOCAL_PROTOCOLS: Final = frozenset({"", "file", "local"})


def is_local_path(path: str | os.PathLike[str] | RemotePath) -> bool:
    """True for a plain path or a ``file://`` URL (written with plain Python I/O)."""
    protocol = getattr(path, "protocol", None)
    if isinstance(protocol, str):  # an ObjectStoragePath (see classify_path)
        return protocol in _LOCAL_PROTOCOLS
    if isinstance(path, PurePath):
        return True
    scheme = urlsplit(os.fspath(cast("str | os.PathLike[str]", path))).scheme
    return scheme in ("", "file") or len(scheme) == 1  # 'C:\\...' parses as scheme 'c'


def local_path(path: str | os.PathLike[str] | RemotePath) -> Path:
    """The filesystem path of a plain path or a ``file://`` URL.

    :raises ExportArgumentError: for another scheme, or a ``file://`` URL naming a remote host.
    """
    protocol = getattr(path, "protocol", None)
    if isinstance(protocol, str):  # an ObjectStoragePath (see classify_path)
        if protocol not in _LOCAL_PROTOCOLS:
            raise ExportArgumentError(f"path={path!r} is not a local path or file:// URL")
        return Path(str(getattr(path, "path", "")))
    if isinstance(path, PurePath):
        return Path(path)
    text = os.fspath(cast("str | os.PathLike[str]", path))
    parts = urlsplit(text)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ExportArgumentError(f"path={text!r}: a file:// URL must name a local path (file:///...)")
        return Path(url2pathname(parts.path))
    if not is_local_path(text):
        raise ExportArgumentError(f"path={text!r} is not a local path or file:// URL")
    return Path(text).expanduser()


def classify_path(path: Any) -> tuple[Path | None, RemotePath | None]:
    """``(local_path, None)`` or ``(None, remote_path)`` for a path, URL or ``ObjectStoragePath``.

    An object storage path (a ``UPath``: it has a ``protocol``) is recognised before ``PurePath`` and
    ``os.PathLike``: older ``universal_pathlib`` releases (Airflow 3.1) make every ``UPath`` a
    ``pathlib.Path`` whose ``__fspath__`` is the bucket-relative path, which must never be taken
    for a local file.

    :raises ExportArgumentError: for anything else.
    """
    protocol = getattr(path, "protocol", None)
    if isinstance(protocol, str) and isinstance(path, RemotePath):
        return (local_path(path), None) if protocol in _LOCAL_PROTOCOLS else (None, path)
    if isinstance(path, str | os.PathLike):
        return local_path(path), None
    raise ExportArgumentError(
        f"path={path!r} is neither a local path nor an object storage path "
        "(use airflow.sdk.ObjectStoragePath for s3://, gs://... URLs)"
    )


def _temp_name(name: str) -> str:
    return f".{name}.tmp-{uuid.uuid4().hex}"


class AtomicTarget:
    """Write a file under a temporary sibling name and rename it over ``path`` only on success.

    Use as a context manager yielding a binary stream. On success the stream is flushed (and
    fsync-ed, for local files) and renamed over ``path`` (``os.replace``: atomic on one filesystem);
    on any exception, including ``KeyboardInterrupt`` and Airflow's task termination, the temporary
    file is removed and ``path`` keeps what it had. :meth:`abort` does the same from a signal handler.

    Local paths (plain or ``file://``) use plain Python I/O and create missing parent directories.
    Anything else must be a :class:`RemotePath` (``airflow.sdk.ObjectStoragePath``): the temporary
    key is then renamed with the store's move, which is a copy and a delete on object stores (the
    final key still appears only once the copy is complete, but the move is not one atomic step).
    """

    def __init__(self, path: str | os.PathLike[str] | RemotePath) -> None:
        self.path = path
        self._local: Path | None = None
        self._remote: RemotePath | None = None
        self._local, self._remote = classify_path(path)
        if self._local is not None:
            text = os.fspath(path) if isinstance(path, str | PurePath) else str(self._local)
            if not self._local.name or text.endswith(("/", os.sep)) or self._local.is_dir():
                raise ExportArgumentError(f"path={text!r} names a directory, not a file")
            self.temp: Any = self._local.with_name(_temp_name(self._local.name))
        else:
            assert self._remote is not None
            self.temp = self._remote.with_name(_temp_name(self._remote.name))
        self._stream: Any = None
        self.committed = False

    @property
    def final(self) -> Any:
        """Where the file ends up: a ``Path`` for local targets, else the remote path."""
        return self._local if self._local is not None else self._remote

    def __enter__(self) -> IO[bytes]:
        if self._local is not None:
            self._local.parent.mkdir(parents=True, exist_ok=True)
            self._stream = open(self.temp, "xb")
        else:
            self._stream = self.temp.open("wb")
        return self._stream

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.commit()
        except BaseException:
            self.abort()
            raise

    def commit(self) -> None:
        """Close the stream and move the temporary file over the final path."""
        stream, self._stream = self._stream, None
        if self._local is not None:
            stream.flush()
            os.fsync(stream.fileno())
            stream.close()
            os.replace(self.temp, self._local)
            _fsync_dir(self._local.parent)
        else:
            stream.close()
            self.temp.rename(self._remote)
        self.committed = True

    def abort(self) -> None:
        """Best effort: close the stream and remove the temporary file; never raises."""
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):  # best effort; the file is removed next
                stream.close()
        if self.committed:
            return
        try:
            self.temp.unlink(missing_ok=True)
        except Exception as err:
            log.warning("could not remove the temporary file %s: %s", self.temp, err)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
