#!/bin/bash
# The issue-12 figures of BENCHMARKS.md: every figure 3 runs, load noted. Needs a release build
# (`cargo build --release -p sched-sim`), Redis on 6379, Postgres on 5432 and the cluster on
# 7001-7003 (`sched-redis/scripts/start-cluster.sh`). Output: $OUT (default target/measure)/*.json, load.txt
set -u
cd "$(dirname "$0")/../.."
export REDIS_URL=redis://127.0.0.1:6379
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
export REDIS_CLUSTER_URLS=redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003
S=./target/release/sched-sim
O=${OUT:-target/measure}; mkdir -p "$O"
: > $O/load.txt
evalsha() { redis-cli info commandstats | grep '^cmdstat_evalsha:' | sed 's/.*calls=\([0-9]*\),usec=\([0-9]*\),.*/\1 \2/'; }
clev() { for p in 7001 7002 7003; do redis-cli -p $p info commandstats | grep '^cmdstat_evalsha:' | sed 's/.*calls=\([0-9]*\),usec=\([0-9]*\),.*/\1 \2/'; done | awk '{c+=$1; u+=$2} END {print c, u}'; }
for i in 1 2 3; do
  echo "run $i $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $O/load.txt
  $S --json --repeat 20 > $O/burst-memory-$i.json 2>/dev/null
  for b in redis redis-fred; do
    a=$(evalsha); $S --json --backend $b --repeat 20 > $O/burst-$b-$i.json 2>/dev/null; z=$(evalsha)
    echo "$b $i evalsha_before $a after $z" >> $O/load.txt
  done
  $S --json --backend postgres --repeat 20 > $O/burst-postgres-$i.json 2>/dev/null
  for b in redis-cluster redis-fred-cluster; do
    a=$(clev); $S --json --backend $b --repeat 20 > $O/burst-$b-$i.json 2>/dev/null; z=$(clev)
    echo "$b $i evalsha_before $a after $z" >> $O/load.txt
  done
  for b in memory redis postgres redis-cluster; do $S --json --backend $b --repeat 5 --cache-ttl-ms 0 > $O/cold-$b-$i.json 2>/dev/null; done
  for b in memory redis postgres; do for a in balanced rotate; do
    $S --json --backend $b --affinity $a contention --instances 8 --containers 300 --repeat 10 > $O/near-$b-$a-$i.json 2>/dev/null; done; done
  for b in memory redis postgres; do $S --json --backend $b sustained --duration-secs 3 > $O/sust-$b-$i.json 2>/dev/null; done
  for b in memory redis postgres; do $S --json --backend $b sustained --duration-secs 3 --worker-cpu 100000000 --worker-mem 1000000000 --lifetime-ms 50 --burst-size 1000 --schedulers 2 > $O/thru-$b-$i.json 2>/dev/null; done
done
echo "done $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $O/load.txt
