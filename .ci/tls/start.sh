#!/usr/bin/env bash
# Starts the TLS test servers, with certificates made at run time (.ci/tls/certs.sh), all under
# DIR (pid files, logs, data). Stop them with .ci/tls/stop.sh DIR.
#
#   redis-server, TLS only      rediss://127.0.0.1:6390   client certificate optional
#   redis-server, mTLS          rediss://127.0.0.1:6391   client certificate required
#   Redis Cluster, TLS only     rediss://127.0.0.1:7101..7103 (3 masters, TLS bus and replication)
#   PostgreSQL, ssl = on        127.0.0.1:5433, db `test`; non-SSL connections are rejected:
#       postgres    trust       (over SSL)
#       sched_cert  cert        (client certificate with CN=sched_cert: client-cert-user.pem)
#       sched_pw    scram-sha-256, password in DIR/sched_pw.password
#
# Every server also listens on 127.0.0.2, which the server certificate does not cover (for
# "wrong hostname" tests).
#
# stdout: only `export VAR=...` lines (also written to DIR/env), so that
#   eval "$(bash .ci/tls/start.sh /tmp/sched-tls)"
# works; progress goes to stderr. Idempotent: when every server is up already it only prints the
# variables; otherwise it stops what it started before, wipes DIR and starts everything afresh.
set -euo pipefail

DIR=${1:?usage: start.sh DIR}
HERE="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
REDIS_PORTS="6390 6391"
CLUSTER_PORTS="7101 7102 7103"
PG_PORT=5433
start_ns=$(date +%s%N)

say() { echo "tls: $*" >&2; }

rcli() { # port args...: redis-cli over TLS, trusting the test CA, with the client certificate
  local p=$1; shift
  redis-cli --tls --cacert "$DIR/ca.pem" --cert "$DIR/client.pem" --key "$DIR/client.key" \
    -h 127.0.0.1 -p "$p" "$@"
}

as_pg() { # Runs a command as the postgres OS user when we are root (PostgreSQL refuses root).
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$PG_BIN/initdb" ] || PG_BIN="$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")"
[ -x "$PG_BIN/initdb" ] || { say "no initdb found (/usr/lib/postgresql/*/bin)"; exit 1; }

exports() {
  local urls="" p
  for p in $CLUSTER_PORTS; do urls="$urls${urls:+,}rediss://127.0.0.1:$p"; done
  cat <<EOF
export SCHED_TLS_DIR=$DIR
export REDIS_TLS_URL=rediss://127.0.0.1:6390
export REDIS_TLS_MTLS_URL=rediss://127.0.0.1:6391
export REDIS_TLS_CLUSTER_URLS=$urls
export DATABASE_TLS_URL=postgres://postgres@127.0.0.1:$PG_PORT/test
EOF
}

cluster_healthy() {
  local p
  for p in $CLUSTER_PORTS; do
    rcli "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
  [ "$(rcli "${CLUSTER_PORTS%% *}" cluster info | sed -n 's/^cluster_known_nodes:\([0-9]*\).*/\1/p')" -ge 3 ]
}

all_up() {
  [ -f "$DIR/ca.pem" ] || return 1
  local p
  for p in $REDIS_PORTS; do rcli "$p" ping 2>/dev/null | grep -q PONG || return 1; done
  cluster_healthy || return 1
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" || return 1
}

if all_up; then
  say "already up in $DIR"
  exports | tee "$DIR/env"
  exit 0
fi

# Something is missing: start from scratch (only what we started, by pid file).
bash "$HERE/stop.sh" "$DIR" >&2
# Wipe only a directory this script made (it holds the marker) or an empty one.
if [ -n "$(ls -A "$DIR")" ] && [ ! -f "$DIR/.sched-tls" ]; then
  say "$DIR is not empty and was not made by this script; refusing to wipe it"; exit 1
fi
find "$DIR" -mindepth 1 -delete
touch "$DIR/.sched-tls"
chmod 755 "$DIR"
bash "$HERE/certs.sh" "$DIR" >&2

for p in $REDIS_PORTS $CLUSTER_PORTS $PG_PORT; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    say "port $p is taken by a server this script did not start"; exit 1
  fi
done

# --- Redis -------------------------------------------------------------------------------------
redis_start() { # port auth-clients extra-args...
  local p=$1 auth=$2; shift 2
  mkdir -p "$DIR/redis-$p"
  redis-server --port 0 --tls-port "$p" --bind "127.0.0.1 127.0.0.2" \
    --tls-cert-file "$DIR/server.pem" --tls-key-file "$DIR/server.key" \
    --tls-ca-cert-file "$DIR/ca.pem" --tls-auth-clients "$auth" \
    --daemonize yes --pidfile "$DIR/redis-$p.pid" --logfile "$DIR/redis-$p.log" \
    --dir "$DIR/redis-$p" --save '' --appendonly no "$@"
}

redis_start 6390 optional
redis_start 6391 yes
for p in $CLUSTER_PORTS; do
  redis_start "$p" optional --cluster-enabled yes --tls-cluster yes --tls-replication yes \
    --cluster-config-file "$DIR/redis-$p/nodes.conf" --enable-debug-command local
done

# --- PostgreSQL ----------------------------------------------------------------------------------
# Owned by the server's user; its key must not be readable by anyone else.
mkdir -p "$DIR/pg" "$DIR/pg-ssl" "$DIR/pg-run"
cp "$DIR/server.pem" "$DIR/server.key" "$DIR/ca.pem" "$DIR/pg-ssl/"
chmod 700 "$DIR/pg" "$DIR/pg-ssl"
chmod 600 "$DIR/pg-ssl/server.key"
if [ "$(id -u)" = 0 ]; then chown -R postgres: "$DIR/pg" "$DIR/pg-ssl" "$DIR/pg-run"; fi
as_pg "$PG_BIN/initdb" -D "$DIR/pg" -U postgres --auth=trust --no-sync -E UTF8 \
  --locale=C >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; exit 1; }
PW="$(openssl rand -hex 16)"
umask 077; echo "$PW" >"$DIR/sched_pw.password"; umask 022
as_pg tee -a "$DIR/pg/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1,127.0.0.2'
port = $PG_PORT
unix_socket_directories = '$DIR/pg-run'
ssl = on
ssl_cert_file = '$DIR/pg-ssl/server.pem'
ssl_key_file = '$DIR/pg-ssl/server.key'
ssl_ca_file = '$DIR/pg-ssl/ca.pem'
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
as_pg tee "$DIR/pg/pg_hba.conf" >/dev/null <<EOF
# Local socket: this script's own set-up.
local     all  all                      trust
# TLS only. A certificate user, a password user, and the tests' usual passwordless postgres.
hostssl   all  sched_cert  127.0.0.0/8  cert
hostssl   all  sched_pw    127.0.0.0/8  scram-sha-256
hostssl   all  all         127.0.0.0/8  trust
hostnossl all  all         0.0.0.0/0    reject
EOF
as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg" -l "$DIR/pg-run/pg.log" -w -t 30 \
  -o "-p $PG_PORT -k $DIR/pg-run" start >/dev/null
psql_local() { as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR/pg-run" -p "$PG_PORT" -U postgres "$@"; }
psql_local -d postgres -c "CREATE DATABASE test" \
  -c "CREATE ROLE sched_cert LOGIN" \
  -c "CREATE ROLE sched_pw LOGIN PASSWORD '$PW'" \
  -c "GRANT CREATE ON DATABASE test TO sched_cert, sched_pw" >/dev/null

# --- Redis: wait, then form the cluster ----------------------------------------------------------
for p in $REDIS_PORTS $CLUSTER_PORTS; do
  for _ in $(seq 50); do rcli "$p" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  rcli "$p" ping 2>/dev/null | grep -q PONG || { say "redis on $p did not start"; exit 1; }
done
nodes=""
for p in $CLUSTER_PORTS; do nodes="$nodes 127.0.0.1:$p"; done
# shellcheck disable=SC2086
redis-cli --tls --cacert "$DIR/ca.pem" --cert "$DIR/client.pem" --key "$DIR/client.key" \
  --cluster create $nodes --cluster-replicas 0 --cluster-yes >"$DIR/cluster-create.log" 2>&1 ||
  { cat "$DIR/cluster-create.log" >&2; exit 1; }
for _ in $(seq 100); do cluster_healthy && break; sleep 0.1; done
cluster_healthy || { say "the TLS redis cluster did not become healthy"; exit 1; }

all_up || { say "some TLS server is not up (logs in $DIR)"; exit 1; }
ms=$((($(date +%s%N) - start_ns) / 1000000))
say "up in $((ms / 1000)).$(printf '%03d' $((ms % 1000))) s, in $DIR"
exports | tee "$DIR/env"
