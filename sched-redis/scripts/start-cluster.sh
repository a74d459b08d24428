#!/usr/bin/env bash
# Starts a throw-away 3-master Redis Cluster on 127.0.0.1 for the sched-redis cluster tests.
# Idempotent: exits 0 at once when the cluster is already up and healthy.
#
#   sched-redis/scripts/start-cluster.sh            # ports 7001-7003
#   PORTS="7101 7102 7103" sched-redis/scripts/start-cluster.sh
#   export REDIS_CLUSTER_URLS=redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003
set -euo pipefail

PORTS=${PORTS:-"7001 7002 7003"}
DIR=${CLUSTER_DIR:-/tmp/sched-redis-cluster}
first=${PORTS%% *}

healthy() {
  redis-cli -p "$first" cluster info 2>/dev/null | grep -q '^cluster_state:ok' &&
    [ "$(redis-cli -p "$first" cluster info | sed -n 's/^cluster_known_nodes:\([0-9]*\).*/\1/p')" -ge 3 ]
}

if healthy; then
  echo "redis cluster already up on ports: $PORTS"
  exit 0
fi

mkdir -p "$DIR"
for p in $PORTS; do
  if ! redis-cli -p "$p" ping >/dev/null 2>&1; then
    redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes --enable-debug-command local \
      --cluster-config-file "$DIR/nodes-$p.conf" --dir "$DIR" \
      --daemonize yes --save '' --appendonly no --logfile "$DIR/redis-$p.log"
  fi
done
for p in $PORTS; do
  for _ in $(seq 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
done

if ! healthy; then
  # Half-formed leftovers from an earlier run: start the nodes from scratch.
  for p in $PORTS; do
    redis-cli -p "$p" flushall >/dev/null 2>&1 || true
    redis-cli -p "$p" cluster reset hard >/dev/null 2>&1 || true
  done
  nodes=""
  for p in $PORTS; do nodes="$nodes 127.0.0.1:$p"; done
  # shellcheck disable=SC2086
  redis-cli --cluster create $nodes --cluster-replicas 0 --cluster-yes >/dev/null
fi

for _ in $(seq 100); do
  if healthy; then
    # Every node must agree before tests start routing by slot.
    ok=1
    for p in $PORTS; do
      redis-cli -p "$p" cluster info | grep -q '^cluster_state:ok' || ok=0
    done
    if [ "$ok" = 1 ]; then
      echo "redis cluster up on ports: $PORTS"
      exit 0
    fi
  fi
  sleep 0.1
done
echo "redis cluster did not become healthy" >&2
exit 1
