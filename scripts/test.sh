#!/usr/bin/env bash
# Install trovewatch, PostgreSQL 15 with pgAudit, MariaDB (server_audit plugin), rsyslog,
# systemd-journald and promtool (Debian packages), and run every test. Extra arguments go
# to pytest. In CI (CI=true) the PostgreSQL, MariaDB and promtool tests must run, not skip.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=()
if [ ! -f /usr/lib/postgresql/15/lib/pgaudit.so ] || ! command -v faketime >/dev/null 2>&1; then
  PACKAGES+=(postgresql-15 postgresql-15-pgaudit postgresql-client-15 faketime libfaketime)
fi
command -v promtool >/dev/null 2>&1 || PACKAGES+=(prometheus) # ships /usr/bin/promtool
# mariadb-server ships mariadbd, mariadb-install-db, mariadb-dump and server_audit.so.
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || PACKAGES+=(mariadb-server)
# The syslog daemon the tests of PostgreSQL's syslog output file its messages with.
command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || PACKAGES+=(rsyslog)
# ... and the journal they are read from through journalctl (systemd-journald, journalctl).
[ -x /lib/systemd/systemd-journald ] && command -v journalctl >/dev/null 2>&1 || PACKAGES+=(systemd)
# The locales PostgreSQL logs in for the translated-message tests (lc_messages).
LOCALES=(de_DE fr_FR zh_CN)
[ -d /usr/share/i18n/locales ] && [ -f /usr/share/i18n/locales/zh_CN ] || PACKAGES+=(locales)
if [ "${#PACKAGES[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  if $SUDO true 2>/dev/null; then
    echo "installing ${PACKAGES[*]} (Debian packages)..." >&2
    # The tests start their own servers: keep the packages' daemons (PostgreSQL's main
    # cluster, MariaDB's server, a Prometheus server) from starting, unless a policy-rc.d
    # already rules.
    POLICY_RC_D=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      POLICY_RC_D=/usr/sbin/policy-rc.d
      trap '$SUDO rm -f "$POLICY_RC_D"' EXIT
      printf '#!/bin/sh\n# written by trovewatch scripts/test.sh during apt-get install\nexit 101\n' \
        | $SUDO tee "$POLICY_RC_D" >/dev/null
      $SUDO chmod 755 "$POLICY_RC_D"
    fi
    $SUDO apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      "${PACKAGES[@]}" >/dev/null \
      || { [ "${CI:-}" = "true" ] && exit 1; echo "${PACKAGES[*]} not installable here: the tests that need them will skip" >&2; }
    if [ -n "$POLICY_RC_D" ]; then
      $SUDO rm -f "$POLICY_RC_D"
      trap - EXIT
    fi
  fi
fi
for name in "${LOCALES[@]}"; do
  locale -a 2>/dev/null | grep -qx "$name.utf8" && continue
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO localedef -i "$name" -f UTF-8 "$name.UTF-8" 2>/dev/null \
    || { [ "${CI:-}" = "true" ] && echo "cannot generate locale $name.UTF-8" >&2 && exit 1; \
         echo "locale $name.UTF-8 not generated: the tests that need it will skip" >&2; }
done
source scripts/bootstrap.sh
if [ "${CI:-}" = "true" ]; then export TROVEWATCH_REQUIRE_POSTGRES=1; fi
# The eval extra (River, PyOD, matplotlib): the baselines and plots of `evaluate` are tested too.
exec uv run --extra eval pytest "$@"
