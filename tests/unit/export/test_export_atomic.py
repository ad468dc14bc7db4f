"""AtomicTarget: the file appears at ``path`` only complete; failures leave nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_provider_b24.export import AtomicTarget, ExportArgumentError, is_local_path, local_path


def siblings(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


class TestLocalPaths:
    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            ("/data/x.jsonl", "/data/x.jsonl"),
            ("file:///data/x.jsonl", "/data/x.jsonl"),
            ("file://localhost/data/a%20b.jsonl", "/data/a b.jsonl"),
            ("relative/x.csv", "relative/x.csv"),
            (Path("/data/y.csv"), "/data/y.csv"),
        ],
    )
    def test_local(self, given: str | Path, expected: str) -> None:
        assert is_local_path(given)
        assert local_path(given) == Path(expected)

    @pytest.mark.parametrize("url", ["s3://bucket/x.jsonl", "gs://b/x", "memory://x/y"])
    def test_remote(self, url: str) -> None:
        assert not is_local_path(url)
        with pytest.raises(ExportArgumentError):
            local_path(url)

    def test_file_url_with_a_remote_host_is_refused(self) -> None:
        with pytest.raises(ExportArgumentError, match="local path"):
            local_path("file://server/share/x.jsonl")

    def test_a_directory_is_refused(self, tmp_path: Path) -> None:
        for path in (str(tmp_path) + "/", tmp_path):
            with pytest.raises(ExportArgumentError, match="directory"):
                AtomicTarget(path)


class TestAtomicLocal:
    def test_success_renames_and_creates_parents(self, tmp_path: Path) -> None:
        final = tmp_path / "2024-01-01" / "run.jsonl"
        target = AtomicTarget(f"file://{final}")
        with target as stream:
            stream.write(b"data\n")
            assert target.temp.parent == final.parent
            assert target.temp.name.startswith(".run.jsonl.tmp-")
            assert not final.exists()
        assert final.read_bytes() == b"data\n"
        assert siblings(final.parent) == ["run.jsonl"]

    def test_failure_leaves_no_file_and_no_temp(self, tmp_path: Path) -> None:
        final = tmp_path / "out.jsonl"
        with pytest.raises(RuntimeError), AtomicTarget(final) as stream:
            stream.write(b"partial")
            raise RuntimeError("boom")
        assert siblings(tmp_path) == []

    def test_failure_keeps_the_previous_file(self, tmp_path: Path) -> None:
        final = tmp_path / "out.jsonl"
        final.write_bytes(b"previous run\n")
        with pytest.raises(KeyboardInterrupt), AtomicTarget(str(final)) as stream:
            stream.write(b"partial")
            raise KeyboardInterrupt
        assert final.read_bytes() == b"previous run\n"
        assert siblings(tmp_path) == ["out.jsonl"]

    def test_rerun_replaces(self, tmp_path: Path) -> None:
        final = tmp_path / "out.jsonl"
        for content in (b"first\n", b"second\n"):
            with AtomicTarget(str(final)) as stream:
                stream.write(content)
        assert final.read_bytes() == b"second\n"
        assert siblings(tmp_path) == ["out.jsonl"]

    def test_abort_from_a_kill_handler(self, tmp_path: Path) -> None:
        target = AtomicTarget(tmp_path / "x.csv")
        stream = target.__enter__()
        stream.write(b"half")
        assert len(siblings(tmp_path)) == 1
        target.abort()
        target.abort()  # idempotent
        assert siblings(tmp_path) == []

    def test_temp_names_are_unique(self, tmp_path: Path) -> None:
        assert AtomicTarget(tmp_path / "x").temp != AtomicTarget(tmp_path / "x").temp


class TestAtomicObjectStorage:
    @pytest.fixture
    def memory_root(self) -> object:
        import fsspec
        from airflow.sdk import ObjectStoragePath
        from airflow.sdk.io import attach

        fs = fsspec.filesystem("memory")
        attach("memory", fs=fs)
        root = ObjectStoragePath(f"memory://bucket/export-{os.getpid()}-{id(fs)}")
        yield root
        if fs.exists(root.path):
            fs.rm(root.path, recursive=True)

    def test_temp_key_then_move(self, memory_root: object) -> None:
        final = memory_root / "a" / "x.jsonl"  # type: ignore[operator]
        target = AtomicTarget(final)
        with target as stream:
            stream.write(b"one\n")
            assert not final.exists()
            assert target.temp.name.startswith(".x.jsonl.tmp-")
        assert final.read_bytes() == b"one\n"
        with AtomicTarget(final) as stream:
            stream.write(b"two\n")
        assert final.read_bytes() == b"two\n"
        assert [p.name for p in final.parent.iterdir()] == ["x.jsonl"]

    def test_failure_removes_the_temp_key(self, memory_root: object) -> None:
        final = memory_root / "y.jsonl"  # type: ignore[operator]
        with pytest.raises(ValueError), AtomicTarget(final) as stream:
            stream.write(b"partial")
            raise ValueError("boom")
        assert not final.exists()
        assert not final.parent.exists() or not any(final.parent.iterdir())

    def test_not_a_path(self) -> None:
        with pytest.raises(ExportArgumentError, match="ObjectStoragePath"):
            AtomicTarget(42)  # type: ignore[arg-type]


def test_object_storage_paths_are_never_taken_for_local_files(tmp_path: Path) -> None:
    """Older universal_pathlib gives UPath an ``__fspath__`` returning '/bucket/key': not local."""
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_b24.export import classify_path

    local, remote = classify_path(ObjectStoragePath("s3://bucket/key.jsonl"))
    assert local is None and remote is not None
    local, remote = classify_path(ObjectStoragePath(f"file://{tmp_path}/x.jsonl"))
    assert local == tmp_path / "x.jsonl" and remote is None
