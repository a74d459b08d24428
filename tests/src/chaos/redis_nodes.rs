//! [`RedisNodeFaults`]: server faults on one Redis (Cluster) node at a time, over a tiny
//! blocking RESP client of its own: out of memory (`CONFIG SET maxmemory 1`), `CLIENT PAUSE`
//! and `DEBUG SLEEP` longer than the client's response timeout, and `CLIENT KILL USER` of our
//! own connections (the repository connects as a per-run ACL user, so nothing else is hit).
//!
//! Use it only on servers the test owns (the CI cluster on 7001-7003), never on a shared one.
//! Every change is undone by [`RealFaults::restore`] and again by `Drop` (which also deletes the
//! ACL user), so a failing test leaves no node out of memory.

use super::real::{Injected, RealFaults};
use async_trait::async_trait;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;

/// One RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Ok(String),
    Err(String),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

fn read_reply(r: &mut impl BufRead) -> Result<Reply, String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (tag, rest) = line.split_at(line.len().min(1));
    match tag {
        "+" | ":" => Ok(Reply::Ok(rest.to_owned())),
        "-" => Ok(Reply::Err(rest.to_owned())),
        "$" => {
            let n: i64 = rest.parse().map_err(|_| format!("bad bulk {line:?}"))?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf).map_err(|e| e.to_string())?;
            buf.truncate(n as usize);
            Ok(Reply::Bulk(Some(
                String::from_utf8_lossy(&buf).into_owned(),
            )))
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| format!("bad array {line:?}"))?;
            (0..n.max(0))
                .map(|_| read_reply(r))
                .collect::<Result<_, _>>()
                .map(Reply::Array)
        }
        _ => Err(format!("unexpected reply {line:?}")),
    }
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n", a.len()).bytes());
        out.extend(a.bytes());
        out.extend(b"\r\n");
    }
    out
}

fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, String> {
    let s = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// Sends one command on a fresh connection and reads its reply (blocking, 2 s timeout).
fn command(addr: &str, args: &[&str]) -> Result<Reply, String> {
    let mut s = connect(addr, Duration::from_secs(2))?;
    s.write_all(&encode(args)).map_err(|e| e.to_string())?;
    read_reply(&mut BufReader::new(s))
}

fn ok(addr: &str, args: &[&str]) -> Result<(), String> {
    match command(addr, args)? {
        Reply::Err(e) => Err(format!("{addr} {}: {e}", args.join(" "))),
        _ => Ok(()),
    }
}

/// `host:port` of a `redis://[user[:pw]@]host:port[/db]` URL.
pub fn authority(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.split('/').next().unwrap_or(rest);
    rest.rsplit('@').next().unwrap_or(rest).to_owned()
}

/// Faults on the nodes of a Redis (Cluster) the test owns. See the module docs.
#[derive(Debug)]
pub struct RedisNodeFaults {
    nodes: Vec<String>,
    user: String,
    password: String,
    maxmemory: Vec<String>,
    oom: Mutex<Vec<bool>>,
    pause: Duration,
    sleep: Duration,
}

impl RedisNodeFaults {
    /// Creates a per-run ACL user on every node of `urls` and remembers each node's
    /// `maxmemory`. `pause` and `sleep` should exceed the client's response timeout.
    pub fn create(urls: &[String], pause: Duration, sleep: Duration) -> Result<Self, String> {
        let nodes: Vec<String> = urls.iter().map(|u| authority(u)).collect();
        let user = format!("sched-chaos-{}", crate::ns::random_hex());
        let password = crate::ns::random_hex();
        let mut maxmemory = Vec::new();
        for n in &nodes {
            ok(
                n,
                &[
                    "ACL",
                    "SETUSER",
                    &user,
                    "on",
                    &format!(">{password}"),
                    "~*",
                    "&*",
                    "+@all",
                ],
            )?;
            match command(n, &["CONFIG", "GET", "maxmemory"])? {
                Reply::Array(v) if v.len() == 2 => match &v[1] {
                    Reply::Bulk(Some(m)) => maxmemory.push(m.clone()),
                    other => return Err(format!("{n}: maxmemory {other:?}")),
                },
                other => return Err(format!("{n}: CONFIG GET maxmemory: {other:?}")),
            }
        }
        let oom = Mutex::new(vec![false; nodes.len()]);
        Ok(RedisNodeFaults {
            nodes,
            user,
            password,
            maxmemory,
            oom,
            pause,
            sleep,
        })
    }

    /// The ACL user and password the repository must connect as (for `client-kill`).
    pub fn credentials(&self) -> (&str, &str) {
        (&self.user, &self.password)
    }

    fn restore_blocking(&self) {
        let mut oom = self.oom.lock().unwrap_or_else(|e| e.into_inner());
        for (i, n) in self.nodes.iter().enumerate() {
            if oom[i] {
                match ok(n, &["CONFIG", "SET", "maxmemory", &self.maxmemory[i]]) {
                    Ok(()) => oom[i] = false,
                    Err(e) => eprintln!("chaos: restoring maxmemory on {n} failed: {e}"),
                }
            }
        }
    }

    fn inject_blocking(&self, kind: usize, node: usize) -> Injected {
        let n = &self.nodes[node % self.nodes.len()];
        let res = match kind {
            0 => {
                self.oom.lock().unwrap_or_else(|e| e.into_inner())[node % self.nodes.len()] = true;
                ok(n, &["CONFIG", "SET", "maxmemory", "1"])
            }
            1 => ok(
                n,
                &[
                    "CLIENT",
                    "PAUSE",
                    &self.pause.as_millis().to_string(),
                    "ALL",
                ],
            ),
            2 => return self.debug_sleep(n),
            _ => ok(n, &["CLIENT", "KILL", "USER", &self.user]),
        };
        match res {
            Ok(()) => Injected::Yes,
            Err(e) => Injected::Refused(e),
        }
    }

    /// `DEBUG SLEEP` without waiting for it: a refusal comes back at once, a sleep does not.
    fn debug_sleep(&self, n: &str) -> Injected {
        let secs = format!("{:.3}", self.sleep.as_secs_f64());
        let s = connect(n, Duration::from_millis(100)).and_then(|mut s| {
            s.write_all(&encode(&["DEBUG", "SLEEP", &secs]))
                .map_err(|e| e.to_string())?;
            Ok(s)
        });
        let s = match s {
            Ok(s) => s,
            Err(e) => return Injected::Refused(e),
        };
        let mut r = BufReader::new(s);
        match read_reply(&mut r) {
            Ok(Reply::Err(e)) => Injected::Refused(e),
            Ok(_) => Injected::Yes,
            // Timed out: the node is asleep. Let a thread wait for the reply and close.
            Err(_) => {
                let _ = r.get_ref().set_read_timeout(Some(Duration::from_secs(30)));
                std::thread::spawn(move || read_reply(&mut r));
                Injected::Yes
            }
        }
    }
}

#[async_trait]
impl RealFaults for RedisNodeFaults {
    fn kinds(&self) -> Vec<&'static str> {
        vec!["oom", "client-pause", "debug-sleep", "client-kill"]
    }

    fn nodes(&self) -> usize {
        self.nodes.len()
    }

    async fn inject(&self, kind: usize, node: usize) -> Injected {
        tokio::task::block_in_place(|| self.inject_blocking(kind, node))
    }

    async fn restore(&self) {
        tokio::task::block_in_place(|| self.restore_blocking());
    }
}

impl Drop for RedisNodeFaults {
    fn drop(&mut self) {
        self.restore_blocking();
        for n in &self.nodes {
            if let Err(e) = ok(n, &["ACL", "DELUSER", &self.user]) {
                eprintln!("chaos: ACL DELUSER on {n} failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_encodes_and_decodes() {
        assert_eq!(encode(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
        let mut r = BufReader::new(&b"*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n-ERR no\r\n"[..]);
        assert_eq!(
            read_reply(&mut r).unwrap(),
            Reply::Array(vec![
                Reply::Bulk(Some("maxmemory".into())),
                Reply::Bulk(Some("0".into()))
            ])
        );
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Err("ERR no".into()));
        assert_eq!(authority("redis://u:p@127.0.0.1:7001/0"), "127.0.0.1:7001");
    }
}
