#!/usr/bin/env bash
# Run the tests of the search and its report under optuna 4.x and 5.x (the [optuna] extra allows both): each
# version is installed without dependencies into a folder of its own, put first on the path.
#   devtools/optuna_versions.sh [python]     (default: python3 of the active environment)
set -euo pipefail
PY=${1:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for spec in 'optuna>=4,<5' 'optuna>=5,<6'; do
    site="$WORK/$(echo "$spec" | tr -c 'a-z0-9' _)"
    "$PY" -m pip install -q --no-deps --target "$site" "$spec"
    version=$(cd "$ROOT" && PYTHONPATH="$site" "$PY" -c "import optuna; print(optuna.__version__)")
    echo "== optuna $version"
    (cd "$ROOT" && PYTHONPATH="$site:$ROOT" "$PY" -m pytest -q -p no:cacheprovider tests/test_optuna_search.py tests/test_optuna_end_to_end.py tests/test_report_study.py)
done
