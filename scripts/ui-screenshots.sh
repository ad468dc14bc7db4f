#!/usr/bin/env bash
# Regenerate docs/img/connection-*.png: run the UI test (tests/ui) on the current Airflow (.venv)
# and on the floor version (.venv-floor), each writing its screenshots there. See docs/ui.md.
set -euo pipefail
cd "$(dirname "$0")/.."
"$(dirname "$0")/ensure-chromium.sh"
for venv in .venv .venv-floor; do
  if [ -x "$venv/bin/python" ]; then
    echo "=== $venv: $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("apache-airflow-core"))')"
    B24_UI_SCREENSHOTS=docs/img "$venv/bin/python" -m pytest tests/ui -q -p no:cacheprovider "$@"
  fi
done
ls -l docs/img/connection-*.png
