"""One benchmark cell, in a fresh interpreter: ``python -m benchmarks.cell SPEC.json``.

The parent (:mod:`benchmarks.run`) writes the spec, runs this module as a child process and reads the
result file back. Timeline inside the child:

1. ``startup_s``: from process creation (``psutil``) to the first line here (interpreter boot);
2. ``import_s`` / ``import_cpu_s``: importing the contender's library;
3. ``wall_s`` / ``cpu_s``: constructing the client **and** the call (fetch, or export to a file);
4. ``warm_wall_s`` / ``warm_cpu_s`` (mode ``coldwarm`` only): a second call on other IDs, same object;
5. ``peak_rss_mb``: the peak RSS (``VmHWM``) right after the calls, before anything else is loaded;
6. the returned rows are written to a JSON-lines file for the parent to check against the store
   (outside every measurement).
"""

from __future__ import annotations

import time

_T_MAIN = time.time()

import contextlib  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


def _rss_mb() -> float:
    """Peak RSS of this process image: ``VmHWM`` (``ru_maxrss`` would inherit the parent's peak
    across fork + exec on Linux, and the parent holds the emulator's data)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / (1024.0 * 1024.0)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    import psutil

    out: dict[str, Any] = {"startup_s": max(0.0, _T_MAIN - psutil.Process().create_time())}
    from benchmarks.contenders import CONTENDERS, Target

    cls = CONTENDERS[spec["contender"]]
    target = Target(spec["target"])
    mode = spec["mode"]

    rows: list[dict[str, Any]] = []
    contender = None
    cpu0, t0 = time.process_time(), time.perf_counter()
    try:
        modules = cls.export_modules if mode == "export" and cls.export_modules is not None else cls.modules
        if mode == "warmup":
            modules = (*cls.modules, *(cls.export_modules or ()))
        for module in modules:
            importlib.import_module(module)
        out["import_s"] = time.perf_counter() - t0
        out["import_cpu_s"] = time.process_time() - cpu0
        out["rss_after_import_mb"] = _current_rss_mb()

        cpu0, t0 = time.process_time(), time.perf_counter()
        contender = cls(target)
        if mode == "export":
            out["rows_returned"] = contender.export(Path(spec["export_path"]))
        else:
            rows = contender.fetch(spec["ids"])
            out["rows_returned"] = len(rows)
        out["wall_s"] = time.perf_counter() - t0
        out["cpu_s"] = time.process_time() - cpu0
        if mode == "coldwarm":
            cpu0, t0 = time.process_time(), time.perf_counter()
            warm_rows = contender.fetch(spec["ids2"])
            out["warm_wall_s"] = time.perf_counter() - t0
            out["warm_cpu_s"] = time.process_time() - cpu0
            out["warm_rows_returned"] = len(warm_rows)
            rows = rows + warm_rows
    except Exception as exc:  # a failing contender scores nothing, the run goes on
        out["error"] = f"{type(exc).__name__}: {exc}"[:500]
        out["traceback"] = traceback.format_exc()[-3000:]
        out.setdefault("wall_s", time.perf_counter() - t0)
        out.setdefault("cpu_s", time.process_time() - cpu0)
    out["peak_rss_mb"] = _rss_mb()
    out["total_s"] = time.time() - _T_MAIN + out["startup_s"]

    if contender is not None:
        with contextlib.suppress(Exception):  # closing is not measured
            contender.close()
    if mode != "export":
        from benchmarks.verify import dump_rows

        dump_rows(rows, Path(spec["rows_path"]))
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    result = run(spec)
    Path(spec["result_path"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
