# Summarises sched-sim --json burst reports in a directory (files NAME-RUN.json): min / median per NAME.
import json,glob,sys,statistics,os
O=sys.argv[1] if len(sys.argv) > 1 else 'target/measure-calls'
rows={}
for f in sorted(glob.glob(O+'/*.json')):
    name=os.path.basename(f)[:-5]; key=name.rsplit('-',1)[0]
    d=json.load(open(f))
    # find the strategy report
    def find(x):
        if isinstance(x,dict):
            if 'burst_time' in x: return x
            for v in x.values():
                r=find(v)
                if r: return r
        if isinstance(x,list):
            for v in x:
                r=find(v)
                if r: return r
    r=find(d)
    rows.setdefault(key,[]).append(r)
def mm(xs):
    xs=[x for x in xs if x is not None]
    if not xs: return '-'
    return f"{min(xs):.3f} / {statistics.median(xs):.3f}"
for k,rs in rows.items():
    p50=[r['burst_time']['p50_ms'] for r in rs]
    raw=[(r.get('raw_commit') or {}).get('p50_ms') for r in rs]
    peer=[(r.get('peer') or {}).get('p50_ms') for r in rs]
    cal=[(r.get('callers') or {}).get('p50_ms') for r in rs]
    rf=[r['burst_p50_over_floor'] for r in rs]
    rp=[r.get('burst_p50_over_peer') for r in rs]
    rfc=[r.get('burst_p50_over_floor_and_callers') for r in rs]
    com=[r['per_burst']['reserve_calls'] for r in rs]
    print(f"{k:22} n={len(rs)} p50 {mm(p50)} | raw {mm(raw)} | peer {mm(peer)} | callers {mm(cal)} | /floor {mm(rf)} | /peer {mm(rp)} | /(floor+callers) {mm(rfc)} | commits {mm(com)}")
