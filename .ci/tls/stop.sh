#!/usr/bin/env bash
# Stops the TLS test servers .ci/tls/start.sh DIR started, by the pid files in DIR (and
# pg_ctl for PostgreSQL). Safe to call when nothing runs; leaves DIR in place.
set -uo pipefail

DIR=${1:?usage: stop.sh DIR}
[ -d "$DIR" ] || exit 0

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ -f "$DIR/pg/postmaster.pid" ]; then
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [ -x "$PG_BIN/pg_ctl" ] || PG_BIN="$(dirname "$(command -v pg_ctl)")"
  as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg" stop -m fast -w -t 30 >/dev/null 2>&1 ||
    echo "tls: pg_ctl stop failed (see $DIR/pg-run/pg.log)" >&2
fi

stopped=""
for f in "$DIR"/redis-*.pid; do
  [ -f "$f" ] || continue
  pid="$(cat "$f")"
  # Only a redis-server we started: the pid may have been reused since.
  if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q redis-server; then
    kill "$pid" 2>/dev/null && stopped="$stopped $pid"
  fi
done
for pid in $stopped; do
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { echo "tls: redis-server $pid still runs; killing" >&2; kill -9 "$pid"; }
done
rm -f "$DIR"/redis-*.pid
echo "tls: stopped the servers of $DIR" >&2
exit 0
