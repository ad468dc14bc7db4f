"""Without the OpenLineage provider (and its client) the provider works the same.

A subprocess hides ``airflow.providers.openlineage`` and ``openlineage`` as if they were not
installed (an import hook raises ``ImportError`` for them, and their distributions, hence the
provider's entry point, are not listed), then runs the operators, the sensor, the
export and the hook against the emulator in this process, over HTTPS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from airflow_provider_b24.testing import Bitrix24Emulator

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys

    HIDDEN = ("airflow.providers.openlineage", "openlineage")

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.startswith(HIDDEN):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())

    # ...and no distribution metadata either: Airflow finds providers by their entry points
    # (with importlib.metadata, or the importlib_metadata backport where installed).
    import importlib.metadata

    def without_openlineage(original):
        def distributions(**kwargs):
            for dist in original(**kwargs):
                name = (dist.metadata["Name"] or "").lower().replace("_", "-")
                if not name.startswith(("apache-airflow-providers-openlineage", "openlineage-")):
                    yield dist
        return distributions

    metadata_modules = [importlib.metadata]
    try:
        import importlib_metadata
        metadata_modules.append(importlib_metadata)
    except ImportError:
        pass
    for module in metadata_modules:
        module.distributions = without_openlineage(module.distributions)
    try:
        import airflow.providers.openlineage  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the OpenLineage provider is still importable")

    from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook
    from airflow_provider_b24.operators.activity import Bitrix24GetActivitiesOperator
    from airflow_provider_b24.operators.export import Bitrix24ExportActivitiesOperator
    from airflow_provider_b24.sensors.activity import Bitrix24ActivitySensor

    class TI:
        def xcom_push(self, key, value):
            pass

    out = {}
    rows = Bitrix24GetActivitiesOperator(task_id="get", activity_ids=[1, 2, 3]).execute({"ti": TI()})
    out["get"] = [row["ID"] for row in rows]
    sensor = Bitrix24ActivitySensor(task_id="wait", activity_ids=[2], until="exists", poke_interval=0)
    out["sensor"] = sensor.poke({}).is_done
    export = Bitrix24ExportActivitiesOperator(
        task_id="export", path=sys.argv[1], updated_from="2024-01-01T00:00:00+00:00",
        updated_to="2025-01-01T00:00:00+00:00",
    )
    out["outlets"] = [asset.uri for asset in export.outlets]
    out["export"] = export.execute({})["rows"]
    hook = Bitrix24Hook()
    out["hook"] = len(list(hook.iter_activities(select=["ID"])))
    out["loaded"] = sorted(m for m in sys.modules if m.startswith(HIDDEN))
    print(json.dumps(out))
    """
)


def test_everything_works_without_the_openlineage_provider(
    bitrix24_emulator_factory: Callable[..., Bitrix24Emulator], tmp_path: Path
) -> None:
    emu = bitrix24_emulator_factory(activities=25, seed=6, rate_limit=None)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW_CONN_BITRIX24_DEFAULT": json.dumps(emu.connection()),
    }
    path = tmp_path / "a.jsonl"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["get"] == [1, 2, 3]
    assert out["sensor"] is True
    assert out["outlets"] == [f"file://{path}"]
    assert out["export"] == len(path.read_text().splitlines()) > 0
    assert out["hook"] == 25
    assert out["loaded"] == []
