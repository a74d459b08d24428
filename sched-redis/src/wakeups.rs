//! Wake-ups for [`watch_reservations`](sched_core::watch::watch_reservations): reserve.lua
//! appends one entry per committed worker part to the worker's events stream
//! (`{P:w:<worker>}:events`, capped near 64 entries), and `reservation_wakeups` reads it with
//! `XREAD BLOCK` on a connection of its own, never the shared multiplexed one
//! (ARCHITECTURE.md, "Wake-ups").

use crate::client::{is_noperm, noperm_error, Dedicated};
use crate::codec::bad;
use crate::RedisRepository;
use futures::StreamExt;
use redis::Value;
use sched_core::validate::validate_id;
use sched_core::watch::Wakeups;
use sched_core::RepoError;
use std::time::Duration;

/// How long one `XREAD` blocks on the server.
const BLOCK: Duration = Duration::from_millis(1000);

/// Cluster redirections (`MOVED`) followed to find the node serving the events stream.
const MAX_REDIRECTS: usize = 3;

/// Entries read per `XREAD` (one wake-up per batch).
const COUNT: &str = "1000";

impl RedisRepository {
    /// `reservation_wakeups`: a connection of its own to the node serving the worker's events
    /// stream (on a cluster found by following `MOVED`), the stream's newest entry id taken now
    /// (so every commit from here on wakes it), then `XREAD BLOCK` from that id in a loop. One
    /// wake-up per batch of entries; the stream ends on a connection or server error (the watch
    /// subscribes again and re-reads the ledger). Dropping it closes the connection.
    pub(crate) async fn wakeups(&self, id: &str) -> Result<Wakeups, RepoError> {
        validate_id("worker", id)?;
        let key = self.keys.events(id);
        let name = format!("sched-wakeups:{}", self.keys.prefix());
        let first = self.config.urls.first().cloned();
        let mut url = first.ok_or_else(|| bad("no Redis URL"))?;
        for _ in 0..=MAX_REDIRECTS {
            let mut conn = self.client.dedicated(&self.config, &url, BLOCK).await?;
            // Names the connection for CLIENT LIST; a server refusing it changes nothing.
            let setname = ["CLIENT", "SETNAME", &name].map(str::to_owned);
            let _named = conn.call(setname.into()).await?;
            let range = ["XREVRANGE", &key, "+", "-", "COUNT", "1"].map(str::to_owned);
            match conn.call(range.into()).await? {
                Ok(v) => {
                    let last = newest_in_range(&v).unwrap_or_else(|| "0-0".to_owned());
                    return Ok(stream(conn, key, last));
                }
                Err(e) => match moved(&e) {
                    Some(addr) => url = redirect(&url, addr)?,
                    None if is_noperm(&e) => return Err(noperm_error(&self.config, &e)),
                    None => return Err(bad(format!("redis error: {e}"))),
                },
            }
        }
        Err(RepoError::Unavailable(
            "too many cluster redirections for the wake-up stream".into(),
        ))
    }
}

fn stream(conn: Box<dyn Dedicated>, key: String, last: String) -> Wakeups {
    let block = BLOCK.as_millis().to_string();
    futures::stream::unfold(
        (conn, key, last, block),
        |(mut conn, key, mut last, block)| async move {
            loop {
                let args = ["XREAD", "COUNT", COUNT, "BLOCK", &block, "STREAMS", &key, &last];
                match conn.call(args.map(str::to_owned).into()).await {
                    Ok(Ok(v)) => {
                        if let Some(id) = newest_read(&v) {
                            last = id;
                            return Some(((), (conn, key, last, block)));
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, key, "wake-up stream ends on a server error");
                        return None;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, key, "wake-up stream ends on a connection error");
                        return None;
                    }
                }
            }
        },
    )
    .boxed()
}

/// The address of a `MOVED <slot> <host:port>` error.
fn moved(error: &str) -> Option<&str> {
    let rest = &error[error.find("MOVED ")? + "MOVED ".len()..];
    rest.split_whitespace().nth(1)
}

/// `url` pointed at `addr` (`host:port`), keeping its scheme, credentials and options.
fn redirect(url: &str, addr: &str) -> Result<String, RepoError> {
    let bad_addr = || {
        bad(format!(
            "bad redirection {addr:?} of {}",
            crate::config::redact_url(url)
        ))
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad_addr)?;
    let port: u16 = port.parse().map_err(|_| bad_addr())?;
    let mut u = url::Url::parse(url).map_err(|_| bad_addr())?;
    u.set_host(Some(host.trim_start_matches('[').trim_end_matches(']')))
        .map_err(|_| bad_addr())?;
    u.set_port(Some(port)).map_err(|()| bad_addr())?;
    Ok(u.to_string())
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The id of the first entry of an `XREVRANGE ... COUNT 1` reply.
fn newest_in_range(v: &Value) -> Option<String> {
    match v {
        Value::Array(entries) => match entries.first()? {
            Value::Array(e) => text(e.first()?),
            _ => None,
        },
        _ => None,
    }
}

/// The id of the last entry of an `XREAD` reply (RESP2 array or RESP3 map; `None`: timed out).
fn newest_read(v: &Value) -> Option<String> {
    let entries = match v {
        Value::Array(streams) => match streams.first()? {
            Value::Array(s) => s.get(1)?,
            _ => return None,
        },
        Value::Map(streams) => &streams.first()?.1,
        _ => return None,
    };
    match entries {
        Value::Array(e) => match e.last()? {
            Value::Array(entry) => text(entry.first()?),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn s(x: &str) -> Value {
        Value::BulkString(x.as_bytes().to_vec())
    }

    #[test]
    fn replies_and_redirections_parse() {
        let entry = |id: &str| Value::Array(vec![s(id), Value::Array(vec![s("v"), s("3")])]);
        let read = Value::Array(vec![Value::Array(vec![
            s("k"),
            Value::Array(vec![entry("1-0"), entry("2-5")]),
        ])]);
        assert_eq!(newest_read(&read).as_deref(), Some("2-5"));
        let resp3 = Value::Map(vec![(s("k"), Value::Array(vec![entry("7-1")]))]);
        assert_eq!(newest_read(&resp3).as_deref(), Some("7-1"));
        assert_eq!(newest_read(&Value::Nil), None);
        let range = Value::Array(vec![entry("9-0")]);
        assert_eq!(newest_in_range(&range).as_deref(), Some("9-0"));
        assert_eq!(newest_in_range(&Value::Array(vec![])), None);
        assert_eq!(moved("MOVED 3999 127.0.0.1:7002"), Some("127.0.0.1:7002"));
        assert_eq!(moved("ERR MOVED 1 h:1"), Some("h:1"));
        assert_eq!(moved("WRONGTYPE"), None);
        assert_eq!(
            redirect("rediss://u:p@a:1/0", "10.0.0.2:7003").unwrap(),
            "rediss://u:p@10.0.0.2:7003/0"
        );
    }
}
