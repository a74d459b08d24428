#!/bin/bash
# Issue-12 and issue-14 figures of BENCHMARKS.md: a burst of 100 onto 20 with --calls each and batch
# on every backend, then plain TCP against TLS; 3 runs each. Needs a release build, Redis on 6379,
# Postgres on 5432, the cluster on 7001-7003 and the TLS test servers (.ci/tls/start.sh /tmp/sched-tls).
# Summary: python3 sched-sim/scripts/summarize.py target/measure-calls (and target/measure-tls).
set -u
cd "$(dirname "$0")/../.."
export REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_CLUSTER_URLS=redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003
S=./target/release/sched-sim
O=${OUT:-target/measure-calls}; mkdir -p $O; : > $O/load.txt
for i in 1 2 3; do
  echo "run $i $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $O/load.txt
  for b in memory redis redis-fred postgres redis-cluster; do for c in each batch; do
    $S --json --backend $b --calls $c --repeat 30 > $O/$b-$c-$i.json 2>/dev/null || echo "fail $b $c $i" >> $O/load.txt
  done; done
done
echo "done $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $O/load.txt
# TLS overhead: the same burst over plain TCP and TLS, 3 runs each
source "${TLS_ENV:-/tmp/sched-tls/env}"
T=${OUT:-target/measure-tls}; mkdir -p $T; : > $T/load.txt
for i in 1 2 3; do
  echo "run $i $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $T/load.txt
  for b in redis redis-fred; do
    $S --json --backend $b --repeat 30 > $T/$b-plain-$i.json 2>/dev/null || echo "fail $b plain $i" >> $T/load.txt
    $S --json --backend $b --redis-url "$REDIS_TLS_URL" --tls-ca-file $SCHED_TLS_DIR/ca.pem --repeat 30 > $T/$b-tls-$i.json 2>/dev/null || echo "fail $b tls $i" >> $T/load.txt
  done
  $S --json --backend postgres --repeat 30 > $T/postgres-plain-$i.json 2>/dev/null || echo "fail pg plain $i" >> $T/load.txt
  $S --json --backend postgres --database-url "$DATABASE_TLS_URL?sslmode=verify-full" --tls-ca-file $SCHED_TLS_DIR/ca.pem --repeat 30 > $T/postgres-tls-$i.json 2>/dev/null || echo "fail pg tls $i" >> $T/load.txt
done
echo "done $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $T/load.txt
