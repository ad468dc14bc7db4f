"""``batch``: up to 50 ``method?query`` commands run in order, with ``$result[key][...]`` references.

Each command's query string is parsed PHP-style first, then every value that contains a
``$result[...]`` reference is substituted (a value that *is* one reference takes the referenced
value as is, arrays included; an embedded reference is replaced by its text). Percent-encoded
references (``%24result%5B...%5D``) decode to the same thing. A reference to a missing path or to a
failed command becomes an empty string. Sections with no entries are ``[]``; a section whose keys are
``0..n-1`` (``cmd`` sent as a list) is a list, as PHP's ``json_encode`` does.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_b24.testing.errors import ApiError
from airflow_provider_b24.testing.methods import MethodResult, param
from airflow_provider_b24.testing.phpquery import parse_str

__all__ = ["MAX_COMMANDS", "BatchOutcome", "run_batch"]

MAX_COMMANDS = 50
_REF_RE = re.compile(r"\$result((?:\[[^\[\]]*\])+)")
_PATH_RE = re.compile(r"\[([^\[\]]*)\]")

Execute = Callable[[str, Mapping[str, Any]], MethodResult]


@dataclass
class BatchOutcome:
    """The batch ``result`` object plus bookkeeping for stats and latency."""

    result: dict[str, Any]
    rows: int = 0
    commands: list[str] = field(default_factory=list)


def _lookup(results: Mapping[str, Any], path: list[str]) -> tuple[bool, Any]:
    node: Any = results
    for part in path:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else ""
    return str(value)


def _substitute(value: Any, results: Mapping[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, results) for v in value]
    if not isinstance(value, str) or "$result" not in value:
        return value
    whole = _REF_RE.fullmatch(value)
    if whole:
        found, target = _lookup(results, _PATH_RE.findall(whole.group(1)))
        return target if found and isinstance(target, list | dict) else _scalar(target)
    return _REF_RE.sub(lambda m: _scalar(_lookup(results, _PATH_RE.findall(m.group(1)))[1]), value)


def _commands(raw: Any) -> list[tuple[str, str]]:
    if isinstance(raw, list):
        return [(str(i), str(v)) for i, v in enumerate(raw)]
    if isinstance(raw, Mapping):
        return [(str(k), str(v)) for k, v in raw.items()]
    return []


def _halt(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "y", "yes")


def _section(items: dict[str, Any]) -> Any:
    """PHP ``json_encode`` of an array: ``[]`` when empty, a list when keyed ``0..n-1``."""
    if not items:
        return []
    if list(items) == [str(i) for i in range(len(items))]:
        return list(items.values())
    return items


def run_batch(
    params: Mapping[str, Any],
    execute: Execute,
    *,
    tz_format: Callable[[float], str],
    command_fault: Callable[[str], ApiError | None],
) -> BatchOutcome:
    """Run a batch; raises ApiError for a batch-level problem (too many commands)."""
    commands = _commands(param(params, "cmd"))
    if len(commands) > MAX_COMMANDS:
        raise ApiError.batch_length()
    halt = _halt(param(params, "halt", False))
    results: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    totals: dict[str, Any] = {}
    nexts: dict[str, Any] = {}
    times: dict[str, Any] = {}
    outcome = BatchOutcome(result={})
    for key, command in commands:
        method_part, _, query = command.partition("?")
        method = method_part.strip().lower()
        if method.endswith(".json"):
            method = method[:-5]
        outcome.commands.append(method)
        started = time.time()
        try:
            if method == "batch":
                raise ApiError.batch_method_not_allowed()
            injected = command_fault(method)
            if injected is not None:
                raise injected
            cmd_params = _substitute(parse_str(query), results)
            answer = execute(method, cmd_params)
        except ApiError as exc:
            errors[key] = {"error": exc.error, "error_description": exc.description}
            if halt:
                break
            continue
        finally:
            finished = time.time()
            times[key] = {
                "start": started,
                "finish": finished,
                "duration": finished - started,
                "processing": finished - started,
                "date_start": tz_format(started),
                "date_finish": tz_format(finished),
            }
        results[key] = answer.result
        outcome.rows += answer.rows
        if answer.total is not None:
            totals[key] = answer.total
        if answer.next is not None:
            nexts[key] = answer.next
    outcome.result = {
        "result": _section(results),
        "result_error": _section(errors),
        "result_total": _section(totals),
        "result_next": _section(nexts),
        "result_time": _section(times),
    }
    return outcome
