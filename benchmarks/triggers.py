"""Fleet of deferred sensors: ``python -m benchmarks.triggers [--sizes 1,10,100,500,2000]``.

N :class:`~airflow_provider_b24.triggers.activity.Bitrix24ActivityTrigger` run in **one event loop**
(one child process, as in one triggerer) against the bundled emulator with Bitrix24 Cloud limits
(leaky bucket 2 requests/s, burst 50; 20 ms + 0.1 ms per row of simulated server time). Each trigger
waits (``until="completed"``, ``poll_interval=5``, default ``first_poll_delay``) for 1-5 activities
of its own; the parent process completes every activity at a random time between
``COMPLETE_FROM_S`` and ``COMPLETE_FROM_S + COMPLETE_SPREAD_S`` after the triggers started, and
samples the emulator's counters. Per size it reports:

* ``requests per poll interval``: HTTP requests the emulator served, divided by the poll intervals
  between the first and the last request (rounded, +1, so N polls ``poll_interval`` apart count N
  intervals); the target is ``ceil(unique IDs / 2500)``;
* 503 ``QUERY_LIMIT_EXCEEDED`` answers;
* the delay from a trigger's last activity completion to its event (median, max); target
  ``poll_interval + 2 s``;
* triggers without an event when the size's time cap (``--cap``) ran out (the child is then killed).

The child runs the triggers exactly as a triggerer would (``async for event in trigger.run()``,
one task each) and writes one line per event; the parent owns the emulator and the clock of the
completions. ``--label`` names the run in ``benchmarks/triggers.json``, which keeps every label
(the ``before`` numbers were measured at the commit before the shared poller, see RESULTS.md);
the Markdown section between the ``triggers`` markers of ``benchmarks/RESULTS.md`` is rewritten
from that file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
RESULTS_JSON = BENCH_DIR / "triggers.json"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
CONN_ID = "bitrix24_bench"
IDS_PER_REQUEST = 2500
POLL_INTERVAL = 5.0
COMPLETE_FROM_S = 8.0
COMPLETE_SPREAD_S = 20.0
SIZES = (1, 10, 100, 500, 2000)
BEGIN = "<!-- triggers:begin -->"
END = "<!-- triggers:end -->"


def physical_limit(unique_ids: int) -> int:
    """The fewest HTTP requests one poll of ``unique_ids`` IDs needs: ceil(n / 2500)."""
    return max(1, math.ceil(unique_ids / IDS_PER_REQUEST)) if unique_ids else 0


def plan(n: int, pool: list[int], seed: int) -> list[list[int]]:
    """n disjoint lists of 1-5 IDs taken from ``pool`` (reproducible)."""
    rng = random.Random(seed * 7919 + n)
    out: list[list[int]] = []
    at = 0
    for _ in range(n):
        k = rng.randint(1, 5)
        out.append(pool[at : at + k])
        at += k
    return out


# ------------------------------------------------------------------------------ child
async def _child_main(spec: dict[str, Any]) -> None:
    from airflow_provider_b24.triggers.activity import Bitrix24ActivityTrigger

    # One line per event, flushed at once (the parent reads the file while the triggers run).
    out = open(spec["events_path"], "a", encoding="utf-8", buffering=1)  # noqa: SIM115, ASYNC230

    async def one(index: int, ids: list[int]) -> None:
        trigger = Bitrix24ActivityTrigger(
            activity_ids=ids, bitrix24_conn_id=CONN_ID, until="completed", poll_interval=POLL_INTERVAL
        )
        async for event in trigger.run():
            status = event.payload.get("status")
            out.write(json.dumps({"trigger": index, "t": time.time(), "status": status}) + "\n")

    # Every trigger starts at once, as when a mapped task group defers together.
    out.write(json.dumps({"ready": time.time()}) + "\n")
    await asyncio.gather(*(one(i, ids) for i, ids in enumerate(spec["triggers"])))
    out.close()


def child(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    asyncio.run(_child_main(spec))
    return 0


# ------------------------------------------------------------------------------ parent
def _events(path: Path) -> dict[int, dict[str, Any]]:
    rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return {row["trigger"]: row for row in rows if "trigger" in row}


def _wait_ready(path: Path, proc: subprocess.Popen[Any], timeout: float = 120.0) -> float:
    """The unix time the child started its triggers (it writes a ``ready`` line first)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip() and "ready" in json.loads(line):
                    return float(json.loads(line)["ready"])
        time.sleep(0.05)
    raise RuntimeError(f"the benchmark child did not start (exit code {proc.poll()})")


def run_size(
    emu: Any, n: int, *, triggers: list[list[int]], cap_s: float, workdir: Path, seed: int
) -> dict[str, Any]:
    """Start one child with ``n`` triggers, complete their activities at random times, measure."""
    rng = random.Random(seed * 104_729 + n)
    unique = sorted({i for ids in triggers for i in ids})
    spec_path = workdir / f"spec-{n}.json"
    events_path = workdir / f"events-{n}.jsonl"
    spec_path.write_text(
        json.dumps({"triggers": triggers, "events_path": str(events_path)}), encoding="utf-8"
    )
    env = dict(os.environ)
    env["AIRFLOW_HOME"] = str(workdir / "airflow_home")
    env[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(emu.connection())
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))

    emu.reset_limits()
    before = emu.stats
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.triggers", "--child", str(spec_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / f"child-{n}.log", "w"),  # noqa: SIM115 - closed with the child
    )
    # The child needs a moment to import Airflow: completions are scheduled from when its triggers start.
    started = _wait_ready(events_path, proc)
    completes = {i: started + COMPLETE_FROM_S + rng.uniform(0, COMPLETE_SPREAD_S) for i in unique}
    pending = sorted(completes.items(), key=lambda kv: kv[1])
    samples: list[tuple[float, int, int]] = []
    deadline = started + cap_s
    events: dict[int, dict[str, Any]] = {}
    while time.time() < deadline:
        now = time.time()
        while pending and pending[0][1] <= now:
            activity_id, _ = pending.pop(0)
            emu.store.complete(activity_id)
            completes[activity_id] = time.time()
        stats = emu.stats
        samples.append(
            (
                now,
                stats["requests"] - before["requests"],
                stats["rejected_rate_limit"] - before["rejected_rate_limit"],
            )
        )
        if events_path.exists():
            events.update(_events(events_path))
        if len(events) == len(triggers) or proc.poll() is not None:
            break
        time.sleep(0.1)
    killed = len(events) < len(triggers)
    try:
        proc.wait(timeout=0 if killed else 30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    after = emu.stats
    if events_path.exists():
        events.update(_events(events_path))

    requests = after["requests"] - before["requests"]
    rejected = after["rejected_rate_limit"] - before["rejected_rate_limit"]
    # When requests were served (sampled every 0.1 s): the first and the last bound the intervals.
    changes = [
        now for (now, count, _), (_, earlier, _) in zip(samples[1:], samples, strict=False) if count > earlier
    ]
    first = changes[0] if changes else started
    last = changes[-1] if changes else started
    # Polls of one interval are POLL_INTERVAL apart; the 0.1 s sampling blurs the span a little: round it.
    intervals = round((last - first) / POLL_INTERVAL) + 1
    delays = []
    errors = 0
    for index, ids in enumerate(triggers):
        event = events.get(index)
        if event is None:
            continue
        if event["status"] != "success":
            errors += 1
            continue
        delays.append(event["t"] - max(completes[i] for i in ids))
    return {
        "triggers": n,
        "unique_ids": len(unique),
        "target_requests_per_interval": physical_limit(len(unique)),
        "http_requests": requests,
        "requests_per_interval": round(requests / intervals, 2) if requests else 0.0,
        "rejected_503": rejected,
        "events": len(events),
        "error_events": errors,
        "without_event": len(triggers) - len(events),
        "delay_median_s": round(statistics.median(delays), 2) if delays else None,
        "delay_max_s": round(max(delays), 2) if delays else None,
        "wall_s": round(time.time() - started, 1),
        "killed_at_cap": killed,
        "cap_s": cap_s,
    }


def run(sizes: Sequence[int], cap_s: float, seed: int, log: Any = print) -> list[dict[str, Any]]:
    from airflow_provider_b24.testing import Bitrix24Emulator

    total = sum(5 * n for n in sizes)
    emu = Bitrix24Emulator(
        activities=total,
        seed=seed,
        tls=True,
        rate_limit=2.0,
        burst=50,
        latency_ms=20.0,
        per_row_latency_ms=0.1,
    ).start()
    try:
        hidden = emu.store.hidden_ids()
        pool = [i for i in emu.store.ids() if i not in hidden]
        random.Random(seed).shuffle(pool)
        for activity_id in pool:
            emu.store.update(activity_id, {"COMPLETED": "N"})
        rows = []
        with tempfile.TemporaryDirectory(prefix="b24-bench-triggers-") as tmp:
            offset = 0
            for n in sizes:
                triggers = plan(n, pool[offset:], seed)
                offset += sum(len(ids) for ids in triggers)
                log(f"  {n} triggers, {sum(len(t) for t in triggers)} activities ...")
                row = run_size(emu, n, triggers=triggers, cap_s=cap_s, workdir=Path(tmp), seed=seed)
                log(
                    f"    -> {row['http_requests']} req ({row['requests_per_interval']}/interval, target "
                    f"{row['target_requests_per_interval']}), {row['rejected_503']} x 503, delay median "
                    f"{row['delay_median_s']} s max {row['delay_max_s']} s, "
                    f"{row['without_event']} without event"
                    f"{' (killed at cap)' if row['killed_at_cap'] else ''}"
                )
                rows.append(row)
        return rows
    finally:
        emu.stop()


# ------------------------------------------------------------------------------ report
def markdown(data: dict[str, Any]) -> str:
    """The RESULTS.md section: one table per label (before / after), then the notes."""
    lines = [
        BEGIN,
        "## Deferred sensors on one portal (triggers in one event loop)",
        "",
        "`python -m benchmarks.triggers` (also run by `make bench`): N `Bitrix24ActivityTrigger`s in one "
        "event loop (one child process, as in one triggerer), each waiting for 1-5 activities of its own "
        f'(`until="completed"`, `poll_interval={POLL_INTERVAL:g}`, default `first_poll_delay`), against '
        "the emulator with Bitrix24 Cloud limits (2 requests/s, burst 50). The activities are completed at "
        f"random times {COMPLETE_FROM_S:g}-{COMPLETE_FROM_S + COMPLETE_SPREAD_S:g} s after the triggers "
        "started. *requests/interval*: requests the emulator served / poll intervals between the first "
        "and the last request (rounded, +1); target `ceil(unique IDs / 2500)`. *delay*: from a trigger's "
        f"last completion to its event; target `poll_interval + 2 s` = {POLL_INTERVAL + 2:g} s. A size that "
        "has not finished by the cap is killed; its triggers without an event are counted.",
        "",
    ]
    for label, run_ in data.items():
        lines.append(f"### {label}: {run_.get('note', '')}".rstrip(": "))
        lines.append("")
        lines.append(
            "| triggers | unique IDs | HTTP requests | requests / interval | target | 503s "
            "| delay median s | delay max s | without event | wall s |"
        )
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in run_["rows"]:
            cap = f" (cap {r['cap_s']:g} s)" if r["killed_at_cap"] else ""
            lines.append(
                f"| {r['triggers']:,} | {r['unique_ids']:,} | {r['http_requests']:,} | "
                f"{r['requests_per_interval']} | {r['target_requests_per_interval']} | {r['rejected_503']} | "
                f"{r['delay_median_s'] if r['delay_median_s'] is not None else '-'} | "
                f"{r['delay_max_s'] if r['delay_max_s'] is not None else '-'} | "
                f"{r['without_event']:,}{cap} | "
                f"{r['wall_s']} |"
            )
        lines.append("")
    lines.append(
        "Reading it: with one poll per trigger, N triggers ask N requests per interval. The client's "
        "per-portal rate limiter queues them at the portal's 2 requests/s, so there are no 503s, but from "
        "about 10 triggers per 5 s on the polls fall behind: the delays grow with the fleet, and the "
        "largest fleets do not finish within the cap (the *before* rows were measured at the commit "
        "before the shared poller, from a copy of that tree, and are kept in `benchmarks/triggers.json`). "
        "With shared polls the fleet costs `ceil(unique IDs / 2500)` requests per interval whatever its "
        "size (fewer near the end, as finished triggers leave the union), and each event comes within "
        "one interval plus the poll's own time of its last completion."
    )
    lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write_section(data: dict[str, Any], path: Path = RESULTS_MD) -> None:
    """Put the section between the markers of RESULTS.md (appended when the markers are missing)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    section = markdown(data)
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.triggers", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default=",".join(str(s) for s in SIZES), help="comma-separated trigger counts"
    )
    parser.add_argument("--cap", type=float, default=75.0, help="seconds per size before the child is killed")
    parser.add_argument("--label", default="after", help="name of this run in triggers.json")
    parser.add_argument("--note", default="", help="one line describing the run (commit, code)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS_JSON, help="JSON file keeping every label")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(f"triggers benchmark ({args.label}): sizes {sizes}, cap {args.cap:g} s per size", flush=True)
    rows = run(sizes, args.cap, args.seed, log=lambda text: print(text, flush=True))
    data = json.loads(args.out.read_text(encoding="utf-8")) if args.out.exists() else {}
    data[args.label] = {"note": args.note, "rows": rows}
    args.out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    if args.out == RESULTS_JSON:
        write_section(data)
    print(f"written {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
