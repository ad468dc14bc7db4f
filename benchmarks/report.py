"""RESULTS.md, the chart and the goal verdicts, from ``results.json`` rows.

``python -m benchmarks.report [DIR]`` re-renders ``DIR/RESULTS.md`` and ``DIR/chart.png`` from
``DIR/results.json`` and ``DIR/environment.json`` without re-running anything.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OURS = ("ours-operator", "ours-hook")
PEERS = ("b24pysdk", "fast-bitrix24", "fast-bitrix24-slow", "naive-loop")
ORDER = (
    "ours-operator",
    "ours-hook",
    "ours-client",
    "b24pysdk",
    "fast-bitrix24",
    "fast-bitrix24-slow",
    "naive-loop",
    "raw-floor",
)
LABELS = {
    "ours-operator": "**ours: operator**",
    "ours-hook": "**ours: hook**",
    "ours-client": "ours: client (no Airflow)",
    "b24pysdk": "b24pysdk",
    "fast-bitrix24": "fast-bitrix24",
    "fast-bitrix24-slow": "fast-bitrix24 slow(1)",
    "naive-loop": "naive loop",
    "raw-floor": "floor: raw batches",
}
METHODS = {
    ("fetch", "ours-operator"): "`Bitrix24GetActivitiesOperator.execute` (typed rows)",
    ("fetch", "ours-hook"): "`Bitrix24Hook.get_activities` (raw rows)",
    ("fetch", "b24pysdk"): "`crm.activity.list(filter={'ID': ids}).as_list()` (`call_list`)",
    ("fetch", "fast-bitrix24"): "`get_by_ID('crm.activity.get', ids)`",
    ("fetch", "ours-client"): "`fetch_activities(Bitrix24Client(...), ids)` (raw rows, no Airflow import)",
    ("fetch", "fast-bitrix24-slow"): "the same inside `with bitrix.slow(1):` (its remedy for 503 storms)",
    ("fetch", "naive-loop"): "`crm.activity.get` per ID, `requests.Session`, sleep 0.5 s on 503",
    ("fetch", "raw-floor"): "not a client, the floor of ceil(N/2500) requests: our batches as f-strings over "
    "`http.client` (4 at once), msgspec, untyped rows, no retries/limiter/Airflow",
    ("export", "ours-operator"): "`Bitrix24ExportActivitiesOperator` → JSON lines",
    ("export", "ours-hook"): "`Bitrix24Hook.iter_activities()` → JSON lines",
    ("export", "ours-client"): "`Bitrix24Client.iter_list('crm.activity.list', order ID)` → JSON lines",
    ("export", "b24pysdk"): "`crm.activity.list().as_list_fast()` (`call_list_fast`) → JSON lines",
    ("export", "fast-bitrix24"): "`get_all('crm.activity.list')` → JSON lines",
}
PEER_FACTOR = 0.8


def _sorted(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(row: dict[str, Any]) -> tuple[int, int]:
        name = row["contender"]
        return (ORDER.index(name) if name in ORDER else 99, row["n"])

    return sorted(rows, key=key)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _cell(row: dict[str, Any] | None, key: str, digits: int = 2) -> str:
    if row is None:
        return "-"
    text = _fmt(row.get(key), digits)
    if row.get("extrapolated"):
        return f"~{text}*"
    if row.get("correct") is False:
        return f"{text} ✗"
    return text


# ------------------------------------------------------------------------------ goals
def _requests_detail(row: dict[str, Any], limit: int, n: int) -> str:
    return f"{row['http_requests']} requests (limit {limit}), rows ok {row['rows_ok']:,}/{n:,}"


#: ID slices the export reads at once (``export_activities(slices=...)`` default; issue 17).
EXPORT_SLICES = 4


def best_peer(rows: Sequence[dict[str, Any]], scenario: str, n: int) -> dict[str, Any] | None:
    """The fastest correct, measured peer cell at (scenario, n)."""
    peers = [
        r
        for r in rows
        if r["scenario"] == scenario
        and r["n"] == n
        and r["contender"] in PEERS
        and r.get("correct")
        and not r.get("extrapolated")
    ]
    return min(peers, key=lambda r: r["wall_s"]) if peers else None


def _floor_note(rows: Sequence[dict[str, Any]], n: int, peer: dict[str, Any]) -> str:
    """The raw floor of ceil(N/2500) requests at this N, as a ratio to the best peer (when measured)."""
    floor = next(
        (r for r in rows if r["scenario"] == "fetch" and r["n"] == n and r["contender"] == "raw-floor"
         and r.get("correct")),
        None,
    )  # fmt: skip
    if floor is None or not peer["wall_s"]:
        return ""
    return f"; raw floor {floor['wall_s']:.3f} s = {floor['wall_s'] / peer['wall_s']:.2f}x"


def goals(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's three goals, per contender of ours and per N: met or not, with the numbers."""
    verdicts: list[dict[str, Any]] = []
    for row in _sorted(r for r in rows if r["contender"] in OURS):
        scenario, n = row["scenario"], row["n"]
        if scenario == "fetch":
            limit = max(1, math.ceil(n / 2500))
            verdicts.append(
                {
                    "goal": "requests = ceil(N/2500)",
                    "contender": row["contender"],
                    "n": n,
                    "met": bool(row.get("correct")) and row["http_requests"] == limit,
                    "detail": _requests_detail(row, limit, n),
                }
            )
            if n >= 500:
                peer = best_peer(rows, scenario, n)
                if peer is not None:
                    ratio = row["wall_s"] / peer["wall_s"] if peer["wall_s"] else math.inf
                    verdicts.append(
                        {
                            "goal": f"wall ≤ {PEER_FACTOR}x best peer",
                            "contender": row["contender"],
                            "n": n,
                            "met": bool(row.get("correct")) and ratio <= PEER_FACTOR,
                            "detail": f"{row['wall_s']:.3f} s vs {peer['contender']} {peer['wall_s']:.3f} s "
                            f"({peer['http_requests']} requests) = {ratio:.2f}x" + _floor_note(rows, n, peer),
                        }
                    )
        elif scenario == "export":
            limit = math.ceil(n / 2500) + EXPORT_SLICES + 2
            verdicts.append(
                {
                    "goal": f"export requests ≤ ceil(N/2500)+K+2 (K={EXPORT_SLICES} slices)",
                    "contender": row["contender"],
                    "n": n,
                    "met": bool(row.get("correct")) and row["http_requests"] <= limit,
                    "detail": _requests_detail(row, limit, n),
                }
            )
            peer = best_peer(rows, scenario, n)
            if peer is not None:
                ratio = row["wall_s"] / peer["wall_s"] if peer["wall_s"] else math.inf
                verdicts.append(
                    {
                        "goal": "export wall vs best peer (informative)",
                        "contender": row["contender"],
                        "n": n,
                        "met": None,
                        "detail": f"{row['wall_s']:.3f} s vs {peer['contender']} {peer['wall_s']:.3f} s "
                        f"= {ratio:.2f}x",
                    }
                )
    return verdicts


# ------------------------------------------------------------------------------ markdown
def _pivot(rows: Sequence[dict[str, Any]], key: str, ns: Sequence[int], digits: int = 2) -> list[str]:
    lines = ["| contender | " + " | ".join(f"N={n:,}" for n in ns) + " |"]
    lines.append("|---|" + "---:|" * len(ns))
    names = [c for c in ORDER if any(r["contender"] == c for r in rows)]
    for name in names:
        cells = []
        for n in ns:
            match = next((r for r in rows if r["contender"] == name and r["n"] == n), None)
            cells.append(_cell(match, key, digits))
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    return lines


def _detail(rows: Sequence[dict[str, Any]], *, coldwarm: bool = False) -> list[str]:
    head = (
        "| contender | N | HTTP requests | physical limit | 503s | wall s | CPU s | peak RSS MB "
        "| RSS after import MB | import s | rows ok |"
    )
    extra_head = " cold total s | warm wall s | warm CPU s |" if coldwarm else ""
    lines = [
        head + extra_head,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" * 3 if coldwarm else ""),
    ]
    for row in _sorted(rows):
        rows_ok = "extrapolated" if row.get("extrapolated") else _fmt(row.get("rows_ok"))
        if row.get("correct") is False:
            rows_ok += " ✗ " + str(row.get("error") or (row.get("check_examples") or [""])[0])[:80]
        cells = [
            LABELS.get(row["contender"], row["contender"]),
            _fmt(row["n"]),
            _cell(row, "http_requests"),
            _fmt(row.get("physical_limit")),
            _fmt(row.get("rejected_503")),
            _cell(row, "wall_s", 3),
            _fmt(row.get("cpu_s"), 3),
            _fmt(row.get("peak_rss_mb"), 0),
            _fmt(row.get("rss_after_import_mb"), 0),
            _fmt(row.get("import_s"), 2),
            rows_ok,
        ]
        if coldwarm:
            cells += [
                _fmt(row.get("cold_total_s"), 3),
                _fmt(row.get("warm_wall_s"), 3),
                _fmt(row.get("warm_cpu_s"), 3),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(
    rows: Sequence[dict[str, Any]],
    env: dict[str, Any],
    memory: dict[str, Any] | None,
    chart: str | None,
    notes: str = "",
) -> str:
    flat = [r for r in rows if r.get("profile") == "flat"]
    rows = [r for r in rows if r.get("profile") != "flat"]
    prof = env.get("profile", {})
    versions = env.get("versions", {})
    fetch = [r for r in rows if r["scenario"] == "fetch"]
    export = [r for r in rows if r["scenario"] == "export"]
    coldwarm = [r for r in rows if r["scenario"] == "coldwarm"]
    ns = sorted({r["n"] for r in fetch})
    out: list[str] = ["# Benchmark results", ""]
    out.append(
        f"Run `{env.get('command', 'python -m benchmarks.run')}` on {env.get('date_utc', '?')}, commit "
        f"`{env.get('git_commit', '?')}`, in {env.get('duration_s', '?')} s."
    )
    out += [
        "",
        f"- Machine: {env.get('cpu', '?')}, {env.get('cpus', '?')} CPUs (shared with other work), "
        f"{env.get('memory_gb', '?')} GB RAM; {env.get('platform', '?')}; Python {env.get('python', '?')}. "
        f"Load average (1/5/15 min) at start {env.get('load_average_at_start', '?')}, at end "
        f"{env.get('load_average_at_end', '?')}: timings are noisy when other work runs.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "- Emulator (`airflow_provider_b24.testing.Bitrix24Emulator`, HTTPS on loopback, in the parent "
        f"process): "
        f"{prof.get('activities', 0):,} activities (seed {prof.get('seed')}), Bitrix24 Cloud limits "
        f"(leaky bucket {prof.get('rate_limit')} requests/s, burst {prof.get('burst')}, 503 "
        f"`QUERY_LIMIT_EXCEEDED` beyond), simulated server time {prof.get('latency_ms')} ms per request + "
        f"{prof.get('per_row_latency_ms')} ms per returned row.",
        "- Every contender x scenario runs in a **fresh Python process** (honest cold start; CPU and peak "
        "RSS are the client's own, the emulator's CPU is not counted). Before each cell the emulator's "
        "bucket is emptied (`emu.reset_limits()`), so every cell starts with the same 50 free requests; "
        "requests and 503s are the emulator's counters for that cell.",
        "- `wall s` / `CPU s`: client construction + the call, after imports (imports are `import s`). "
        "`peak RSS`: the child's peak RSS (`VmHWM`) right after the call (interpreter + imports + data). "
        "Ours imports Airflow; in a real worker that cost is already paid, so compare "
        "`peak RSS - RSS after import` too. Our operator and hook cells also load, untimed, what a "
        "worker has loaded before `execute` (the task supervisor and runner modules, the plugins: "
        "`benchmarks/worker_state.py`); before, the first call paid Airflow's lazy import of the "
        "supervisor (15 ms) and the plugin scan of the hook-lineage collector.",
        "- `rows ok`: rows equal to the emulator's store field by field (every field `crm.activity.get` "
        "returns; raw clients must match the wire exactly, our typed operator must match after "
        "normalisation by the emulator's own field table). A cell with a wrong or missing row is marked ✗ "
        "and does not count.",
        "- IDs: a random sample of existing IDs (fixed seed), the same list for every contender.",
        "- Byte-code: this environment sets `PYTHONDONTWRITEBYTECODE=1` and its venv has no `__pycache__`, "
        "so each process would compile every module it imports from source (seconds for Airflow). The "
        "runner gives the children a private `PYTHONPYCACHEPREFIX` and warms it with one untimed call per "
        "contender, so imports and first calls cost what they cost on an installed system.",
        "",
    ]
    if chart:
        out += [f"![wall time vs N]({chart})", ""]

    if fetch:
        out += ["## Fetch by ID", "", "How each contender was called:", ""]
        for name in ORDER:
            if ("fetch", name) in METHODS and any(r["contender"] == name for r in fetch):
                out.append(f"- {LABELS[name]}: {METHODS[('fetch', name)]}")
        out += ["", "### Wall seconds (lower is better)", ""]
        out += _pivot(fetch, "wall_s", ns, 3)
        out += ["", "### HTTP requests sent (the currency under cloud limits)", ""]
        out += _pivot(fetch, "http_requests", ns, 0)
        out.append(
            "| physical limit ceil(N/2500) | "
            + " | ".join(str(max(1, math.ceil(n / 2500))) for n in ns)
            + " |"
        )
        out += ["", "### Every metric", ""]
        out += _detail(fetch)
        if any(r.get("extrapolated") for r in fetch):
            naive_cap = prof.get("naive_cap")
            note = next((r["extrapolated_from"] for r in fetch if r.get("extrapolated")), "")
            out += [
                "",
                "`~…*` = **extrapolated, not measured**: the naive loop is capped at "
                f"N ≤ {naive_cap}; beyond it "
                f"one request per ID, the first {prof.get('burst')} free, then {prof.get('rate_limit')} per "
                f"second ({note}).",
            ]
        out.append("")
    if coldwarm:
        out += [
            "## Cold start vs warm",
            "",
            f"One process makes two fetches of {coldwarm[0]['n']:,} different IDs with the same client "
            "object. "
            "`cold total` = interpreter start + imports + first call; `warm` = the second call.",
            "",
        ]
        out += _detail(coldwarm, coldwarm=True)
        out.append("")
    if export:
        out += [
            f"## Full export ({export[0]['n']:,} activities)",
            "",
            "Every contender writes each row to a JSON-lines file as it arrives (the same sink for all "
            "peers; our export operator writes its own typed JSON lines).",
            "",
        ]
        for name in ORDER:
            if ("export", name) in METHODS and any(r["contender"] == name for r in export):
                out.append(f"- {LABELS[name]}: {METHODS[('export', name)]}")
        out.append("")
        out += _detail(export)
        out.append("")
    out += flat_section(flat, env.get("flat_profile") or {})
    out += parse_section(env.get("parse"))
    if memory:
        out += ["## Export memory (benchmarks/export_memory.py)", ""]
        if isinstance(memory.get("table"), str):
            out += [memory["table"], ""]
        else:
            out += ["```", json.dumps(memory, indent=1)[:3000], "```", ""]
    verdicts = goals(rows)
    if verdicts:
        out += [
            "## Goals (issue 9)",
            "",
            "| goal | contender | N | met | numbers |",
            "|---|---|---:|:---:|---|",
        ]
        for v in verdicts:
            met = "-" if v["met"] is None else ("yes" if v["met"] else "**no**")
            name = LABELS.get(v["contender"], v["contender"])
            out.append(f"| {v['goal']} | {name} | {v['n']:,} | {met} | {v['detail']} |")
        out.append("")
    if notes:
        out += ["## Notes on this run", "", notes.strip(), ""]
    out += [
        "## Reproduce",
        "",
        "```",
        "make bench        # python -m benchmarks.run --full   (≈ 12 min: the throttled peers dominate)",
        "make bench-quick  # python -m benchmarks.run --quick  (< 3 min; writes benchmarks/quick/)",
        "python -m benchmarks.report benchmarks   # re-render this file and the chart from results.json",
        "```",
        "",
    ]
    return "\n".join(out)


# ------------------------------------------------------------------------------ chart
def render_chart(rows: Sequence[dict[str, Any]], path: Path) -> bool:
    """Wall time vs N (log-log) and HTTP requests vs N, plus the export bars; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fetch = [r for r in rows if r["scenario"] == "fetch" and (r.get("wall_s") or r.get("timed_out_s"))]
    export = [r for r in rows if r["scenario"] == "export" and r.get("correct")]
    if not fetch:
        return False
    styles = {
        "ours-operator": ("#d62728", "o"),
        "ours-hook": ("#ff7f0e", "s"),
        "ours-client": ("#8c564b", "^"),
        "b24pysdk": ("#1f77b4", "D"),
        "fast-bitrix24": ("#2ca02c", "v"),
        "fast-bitrix24-slow": ("#17becf", "<"),
        "naive-loop": ("#7f7f7f", "x"),
        "raw-floor": ("#bcbd22", "+"),
    }
    panels = 3 if export else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.4))
    ax_wall, ax_req = axes[0], axes[1]
    for name in ORDER:
        mine = sorted((r for r in fetch if r["contender"] == name), key=lambda r: r["n"])
        if not mine:
            continue
        color, marker = styles.get(name, ("black", "."))
        label = LABELS.get(name, name).replace("*", "")
        measured = [r for r in mine if not r.get("extrapolated") and r.get("correct")]
        guessed = [r for r in mine if r.get("extrapolated")]
        failed = [r for r in mine if r.get("correct") is False and (r.get("wall_s") or r.get("timed_out_s"))]
        for ax, key in ((ax_wall, "wall_s"), (ax_req, "http_requests")):
            for r in failed:
                y = r.get(key) or (r.get("timed_out_s") if key == "wall_s" else None) or 1e-3
                text = "timed out" if r.get("timed_out_s") else "failed"
                ax.scatter([r["n"]], [max(y, 1e-3)], marker="X", s=80, color=color, zorder=5)
                ax.annotate(
                    text,
                    (r["n"], max(y, 1e-3)),
                    textcoords="offset points",
                    xytext=(5, -10),
                    fontsize=7,
                    color=color,
                )
            if measured:
                ax.plot(
                    [r["n"] for r in measured],
                    [r[key] for r in measured],
                    marker=marker,
                    color=color,
                    label=label,
                )
            if guessed and measured:
                xs = [measured[-1]["n"]] + [r["n"] for r in guessed]
                ys = [measured[-1][key]] + [r[key] for r in guessed]
                ax.plot(
                    xs,
                    ys,
                    linestyle="--",
                    marker=marker,
                    color=color,
                    alpha=0.5,
                    label=f"{label} (extrapolated)" if ax is ax_wall else None,
                )
    ns = sorted({r["n"] for r in fetch})
    ax_req.plot(
        ns, [max(1, math.ceil(n / 2500)) for n in ns], color="black", linestyle=":", label="ceil(N/2500)"
    )
    for ax, title, ylabel in (
        (ax_wall, "Fetch by ID: wall time", "seconds"),
        (ax_req, "Fetch by ID: HTTP requests", "requests"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N activity IDs")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.25)
    ax_wall.legend(fontsize=7, loc="upper left")
    ax_req.legend(fontsize=7, loc="upper left")
    if export:
        ax_exp = axes[2]
        bars = [r for r in _sorted(export)]
        ax_exp.barh(
            [LABELS.get(r["contender"], r["contender"]).replace("*", "") for r in bars],
            [r["wall_s"] for r in bars],
            color=[styles.get(r["contender"], ("black", "."))[0] for r in bars],
        )
        for i, r in enumerate(bars):
            ax_exp.text(
                r["wall_s"], i, f" {r['wall_s']:.1f} s, {r['http_requests']} req", va="center", fontsize=7
            )
        ax_exp.invert_yaxis()
        ax_exp.set_xlabel("seconds")
        ax_exp.set_title(f"Full export of {bars[0]['n']:,} activities")
        ax_exp.set_xlim(0, max(r["wall_s"] for r in bars) * 1.6)
        ax_exp.tick_params(axis="y", labelsize=7)
    fig.suptitle(
        "Bitrix24 emulator, cloud limits (2 req/s, burst 50), 20 ms + 0.1 ms/row per request", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------ flat-latency profile
def flat_section(rows: Sequence[dict[str, Any]], prof: dict[str, Any]) -> list[str]:
    """The flat-latency portal (issue 17): the same tables for the second profile, with its goals."""
    if not rows:
        return []
    fetch = [r for r in rows if r["scenario"] == "fetch"]
    export = [r for r in rows if r["scenario"] == "export"]
    ns = sorted({r["n"] for r in fetch})
    out = [
        "## Flat-latency portal (second profile)",
        "",
        f"The same emulator in its own process (HTTPS, Bitrix24 Cloud limits: {prof.get('rate_limit')} "
        f"requests/s, burst {prof.get('burst')}), {prof.get('activities', 0):,} activities, a flat "
        f"{prof.get('latency_ms')} ms per request and **no per-row server time**, so the clients' own CPU "
        "(decoding, parsing) shows instead of being overlapped by simulated server work. Same IDs, same "
        "checks field by field.",
        "",
    ]
    if fetch:
        out += ["### Fetch by ID: wall seconds", ""]
        out += _pivot(fetch, "wall_s", ns, 3)
        out += ["", "### Fetch by ID: HTTP requests", ""]
        out += _pivot(fetch, "http_requests", ns, 0)
        out += ["", "### Every metric", ""]
        out += _detail(fetch)
        out.append("")
    if export:
        out += [f"### Full export ({export[0]['n']:,} activities)", ""]
        out += _detail(export)
        out.append("")
    verdicts = goals(rows)
    if verdicts:
        out += ["### Goals (issue 17, this profile)", "", "| goal | contender | N | met | numbers |"]
        out.append("|---|---|---:|:---:|---|")
        for v in verdicts:
            met = "-" if v["met"] is None else ("yes" if v["met"] else "**no**")
            out.append(f"| {v['goal']} | {LABELS.get(v['contender'], v['contender'])} | {v['n']:,} | {met} | "
                       f"{v['detail']} |")  # fmt: skip
        out.append("")
    return out


# ------------------------------------------------------------------------------ typed parsing
def parse_section(parse: dict[str, Any] | None) -> list[str]:
    """Typed parsing against ``json.loads`` of the same rows (:mod:`benchmarks.parse`, issue 17)."""
    if not parse:
        return []
    out = [
        "## Typed parsing vs JSON decoding (benchmarks/parse.py)",
        "",
        "CPU µs per row, best of several runs, one process: `json.loads` of each row's JSON text, then "
        "`parse_activities` on the decoded rows (a list: the collector is paused), `parse_activity` row by "
        "row (the collector running), and the 0.1.0 parser (kept in the tests as the reference).",
        "",
        "| shape | rows | fields | json.loads | parse_activities | ratio | parse_activity one by one | "
        "ratio | 0.1.0 parser |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for shape, m in parse.items():
        out.append(
            f"| {shape} | {m['rows']:,} | {m['fields']} | {m['json_loads_us']} | **{m['parse_us']}** | "
            f"{m['ratio']}x | {m['parse_one_by_one_us']} | {m['ratio_one_by_one']}x | "
            f"{m.get('reference_0_1_0_us') or '-'} |"
        )
    return [*out, ""]


# ------------------------------------------------------------------------------ export memory
MEMORY_ROWS = (10_000, 100_000)


def export_memory(profile: str, rows: Sequence[int] = MEMORY_ROWS) -> dict[str, Any] | None:
    """Run ``benchmarks/export_memory.py --rows N`` (owned by the export work) for 10k and 100k rows.

    Returns ``{"runs": [its JSON per N], "table": markdown}``; None when the script is absent.
    """
    script = ROOT / "benchmarks" / "export_memory.py"
    if not script.exists():
        return None
    runs: list[dict[str, Any]] = []
    for n in rows:
        try:
            proc = subprocess.run(
                [sys.executable, str(script), "--rows", str(n)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=1200,
                check=False,
            )
        except subprocess.TimeoutExpired:
            runs.append({"rows": n, "error": "timed out"})
            continue
        parsed: dict[str, Any] | None = None
        for line in reversed(proc.stdout.strip().splitlines()):
            try:
                candidate = json.loads(line)
            except ValueError:
                continue
            if isinstance(candidate, dict):
                parsed = candidate
                break
        runs.append(parsed or {"rows": n, "error": f"exit {proc.returncode}: {proc.stderr[-300:]}"})
    return {"runs": runs, "table": memory_table(runs)}


def memory_table(runs: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| rows | requests | baseline RSS MB | peak RSS MB | peak - baseline MB | seconds | file MB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        if "error" in run:
            lines.append(f"| {run.get('rows')} | error: {run['error']} | | | | | |")
            continue
        lines.append(
            f"| {run['rows']:,} | {run.get('requests')} | {_fmt(run.get('baseline_rss_mb'), 1)} "
            f"| {_fmt(run.get('peak_rss_mb'), 1)} | {_fmt(run.get('peak_rss_delta_mb'), 1)} "
            f"| {_fmt(run.get('seconds'), 1)} | {_fmt(run.get('file_mb'), 1)} |"
        )
    ok = [r for r in runs if "error" not in r]
    if len(ok) == 2:
        growth = ok[1]["peak_rss_delta_mb"] - ok[0]["peak_rss_delta_mb"]
        verdict = "met" if growth <= 50 else "**not met**"
        lines += [
            "",
            f"Peak-RSS growth from {ok[0]['rows']:,} to {ok[1]['rows']:,} rows: {growth:+.1f} MB "
            f"(goal of issue 8: at most +50 MB): {verdict}. The script runs the export operator's engine "
            "(`export_activities`) in a child process against an emulator without rate limits.",
        ]
    return "\n".join(lines)


def write_reports(
    rows: Sequence[dict[str, Any]], env: dict[str, Any], memory: dict[str, Any] | None, out: Path
) -> None:
    chart = out / "chart.png"
    has_chart = render_chart([r for r in rows if r.get("profile") != "flat"], chart)
    notes_path = out / "notes.md"  # hand-written observations about the committed run, if any
    notes = notes_path.read_text(encoding="utf-8") if notes_path.exists() else ""
    (out / "RESULTS.md").write_text(
        render_markdown(rows, env, memory, chart.name if has_chart else None, notes), encoding="utf-8"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    out = Path(args[0]) if args else ROOT / "benchmarks"
    rows = json.loads((out / "results.json").read_text(encoding="utf-8"))
    env_path = out / "environment.json"
    env = json.loads(env_path.read_text(encoding="utf-8")) if env_path.exists() else {}
    write_reports(rows, env, env.get("export_memory"), out)
    print(out / "RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
