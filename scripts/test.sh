#!/usr/bin/env bash
# Install trovewatch, PostgreSQL 15 with pgAudit (Debian packages), and run every test.
# Extra arguments go to pytest. In CI (CI=true) the PostgreSQL tests must run, not skip.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/lib/postgresql/15/lib/pgaudit.so ] || ! command -v faketime >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  if $SUDO true 2>/dev/null; then
    echo "installing postgresql-15, postgresql-15-pgaudit, faketime (Debian packages)..." >&2
    $SUDO apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
      postgresql-15 postgresql-15-pgaudit postgresql-client-15 faketime libfaketime >/dev/null \
      || { [ "${CI:-}" = "true" ] && exit 1; echo "PostgreSQL 15 + pgAudit not installable here: its tests will skip" >&2; }
  fi
fi
source scripts/bootstrap.sh
if [ "${CI:-}" = "true" ]; then export TROVEWATCH_REQUIRE_POSTGRES=1; fi
exec uv run pytest "$@"
