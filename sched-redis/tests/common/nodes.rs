//! The cluster's nodes seen directly (not through the repository): which master owns a key,
//! raw reads and writes behind the repository's back, and server faults on one node that are
//! undone when their guard drops.
#![allow(dead_code)]

use redis::Commands;

/// `REDIS_CLUSTER_URLS`, split.
pub fn urls() -> Vec<String> {
    std::env::var("REDIS_CLUSTER_URLS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn conn(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

/// The URL of the master serving `key` (`CLUSTER KEYSLOT`, then `CLUSTER SLOTS`).
pub fn owner(key: &str) -> String {
    let first = urls().into_iter().next().expect("REDIS_CLUSTER_URLS");
    let mut c = conn(&first);
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut c)
        .unwrap();
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
    for s in slots {
        let redis::Value::Array(s) = s else { continue };
        let lo: i64 = redis::from_redis_value_ref(&s[0]).unwrap();
        let hi: i64 = redis::from_redis_value_ref(&s[1]).unwrap();
        if (lo..=hi).contains(&slot) {
            let redis::Value::Array(m) = &s[2] else {
                continue;
            };
            let port: i64 = redis::from_redis_value_ref(&m[1]).unwrap();
            let host: String = redis::from_redis_value_ref(&m[0]).unwrap();
            return format!("redis://{host}:{port}");
        }
    }
    panic!("no master serves {key}");
}

/// The state key of worker `w` under `prefix` (plain ids only: no percent-encoding needed).
pub fn worker_key(prefix: &str, w: &str) -> String {
    format!("{{{prefix}:w:{w}}}:state")
}

/// The index (claim) key of container `c` under `prefix` (plain ids only).
pub fn claim_key(prefix: &str, c: &str) -> String {
    format!("{{{prefix}:c:{c}}}")
}

/// `n` ids `{stem}{i}` whose key (`key(id)`) is served by `url` (`on`) or not (`!on`).
pub fn pick(
    stem: &str,
    n: usize,
    key: impl Fn(&str) -> String,
    url: &str,
    on: bool,
) -> Vec<String> {
    (0..10_000)
        .map(|i| format!("{stem}{i}"))
        .filter(|id| (owner(&key(id)) == url) == on)
        .take(n)
        .collect()
}

/// `GET key` on its master.
pub fn get(key: &str) -> Option<String> {
    conn(&owner(key)).get(key).unwrap()
}

/// `SET key value` on its master (a claim planted behind the repository's back).
pub fn set(key: &str, value: &str) {
    let _: () = conn(&owner(key)).set(key, value).unwrap();
}

/// `CONFIG SET maxmemory 1` on one node (every write refused with OOM) until dropped.
pub struct Oom {
    url: String,
    old: String,
}

impl Oom {
    pub fn on(url: &str) -> Oom {
        let mut c = conn(url);
        let old: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .query(&mut c)
            .unwrap();
        // "1" can only be left by a crashed test of ours: the real setting is then 0.
        let old = old
            .get(1)
            .cloned()
            .filter(|o| o != "1")
            .unwrap_or_else(|| "0".to_owned());
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg("1")
            .query(&mut c)
            .unwrap();
        Oom {
            url: url.to_owned(),
            old,
        }
    }

    pub fn restore(&self) {
        let mut c = conn(&self.url);
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(&self.old)
            .query(&mut c)
            .unwrap();
    }
}

impl Drop for Oom {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Adds `n` random members to the set `key` on its master (fills a worker's fence set).
pub fn sadd_random(key: &str, n: usize) {
    let members: Vec<String> = (0..n)
        .map(|_| format!("{:032x}", rand::random::<u128>()))
        .collect();
    let _: i64 = conn(&owner(key)).sadd(key, members).unwrap();
}
