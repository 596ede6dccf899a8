#!/usr/bin/env bash
# Unit and end-to-end tests of the OHIF "Cardiac LGE review" plugin; installs what it needs.
#
#   ohif-plugin/run-tests.sh              unit + e2e (default)
#   ohif-plugin/run-tests.sh --unit-only  vitest only (no browser, no Orthanc)
#   ohif-plugin/run-tests.sh --e2e-only   e2e only
#
# Needs: Node >= 20 + npm (registry access on first run), the project's Python venv
# (../.venv or $LGENODE_PYTHON) with the node's dependencies, and for the e2e test the Debian
# packages chromium, orthanc, orthanc-dicomweb (installed with apt-get when missing and running
# as root), the MyoPS data ($LGENODE_DATA_DIR) and model weights for the node
# ($LGENODE_TEST_WEIGHTS, else the node's default weights). Exits non-zero when anything fails;
# 77 when the e2e test was skipped because MyoPS data, weights, Orthanc or Chromium are absent.
set -euo pipefail
cd "$(dirname "$0")"

run_unit=1
run_e2e=1
case "${1:-}" in
  --unit-only) run_e2e=0 ;;
  --e2e-only) run_unit=0 ;;
  "") ;;
  *) echo "usage: $0 [--unit-only|--e2e-only]" >&2; exit 2 ;;
esac

PY="${LGENODE_PYTHON:-$(cd .. && pwd)/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
export LGENODE_PYTHON="$PY"

say() { printf '\n== %s\n' "$*"; }

# Node dependencies, reinstalled only when package-lock.json changed.
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f node_modules/.lgenode-lock.sha256 ] || [ "$(cat node_modules/.lgenode-lock.sha256)" != "$lock_sum" ]; then
  say "npm ci"
  npm ci --no-audit --no-fund
  echo "$lock_sum" > node_modules/.lgenode-lock.sha256
fi

say "build plugin (esbuild)"
node scripts/build.mjs

if [ "$run_unit" = 1 ]; then
  say "unit tests (vitest; fixtures from the node's encoders)"
  npm test --silent
fi

if [ "$run_e2e" = 1 ]; then
  say "prebuilt OHIF viewer (npm pack, integrity-checked)"
  node scripts/fetch-viewer.mjs

  missing=()
  command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/sbin/Orthanc ] || missing+=(orthanc)
  ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so >/dev/null 2>&1 || missing+=(orthanc-dicomweb)
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "apt-get install ${missing[*]}"
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "missing for the e2e test: ${missing[*]} (install them, or run with --unit-only)" >&2
      exit 1
    fi
  fi

  say "end-to-end test (Orthanc + the LGE node + OHIF 3.13.2 + headless Chromium)"
  set +e
  "$PY" test/e2e/run_e2e.py
  rc=$?
  set -e
  if [ "$rc" = 77 ]; then
    echo "end-to-end test skipped: something it needs is missing (see the SKIPPED line above)" >&2
    exit 77
  fi
  [ "$rc" = 0 ] || exit "$rc"
fi
say "ohif-plugin tests passed"
