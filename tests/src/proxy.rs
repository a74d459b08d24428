//! [`FaultProxy`]: a loopback TCP proxy between a client and a real server (Redis, Postgres) that
//! injects network faults the way a real network does:
//!
//! * [`FaultProxy::lose_next_replies`]: the next `n` replies from the server are swallowed and the
//!   client's connection is closed. The server has applied the request; the client sees a broken
//!   connection — a lost reply.
//! * [`FaultProxy::kill_all`]: drops every open connection at once, mid-burst.
//!
//! It only ever listens on and connects to loopback addresses given by the test.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Default)]
struct State {
    lose_replies: AtomicU64,
    lost: AtomicU64,
    killed: AtomicU64,
    accepted: AtomicU64,
    paused: AtomicBool,
}

/// A running proxy. Dropping it stops accepting and closes every connection.
#[derive(Debug)]
pub struct FaultProxy {
    local: SocketAddr,
    state: Arc<State>,
    kill: watch::Sender<u64>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` that forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let local = listener.local_addr()?;
        let state = Arc::new(State::default());
        let (kill, _) = watch::channel(0u64);
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (state, kill, conns) = (Arc::clone(&state), kill.clone(), Arc::clone(&conns));
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    state.accepted.fetch_add(1, Ordering::Relaxed);
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let h =
                        tokio::spawn(pump(client, server, Arc::clone(&state), kill.subscribe()));
                    let mut c = conns.lock().unwrap_or_else(|e| e.into_inner());
                    c.retain(|h| !h.is_finished());
                    c.push(h);
                }
            })
        };
        Ok(FaultProxy {
            local,
            state,
            kill,
            conns,
            accept,
        })
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.local
    }

    /// Swallow the next `n` server replies (each closes its connection).
    pub fn lose_next_replies(&self, n: u64) {
        self.state.lose_replies.fetch_add(n, Ordering::SeqCst);
    }

    /// Replies still to be swallowed.
    pub fn pending_losses(&self) -> u64 {
        self.state.lose_replies.load(Ordering::SeqCst)
    }

    /// Replies swallowed so far.
    pub fn lost(&self) -> u64 {
        self.state.lost.load(Ordering::SeqCst)
    }

    /// Connections killed by [`kill_all`](Self::kill_all) so far.
    pub fn killed(&self) -> u64 {
        self.state.killed.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Closes every open connection now.
    pub fn kill_all(&self) -> usize {
        let mut c = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        c.retain(|h| !h.is_finished());
        let n = c.len();
        self.state.killed.fetch_add(n as u64, Ordering::SeqCst);
        self.kill.send_modify(|g| *g += 1);
        n
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for h in self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            h.abort();
        }
    }
}

async fn pump(
    client: TcpStream,
    server: TcpStream,
    state: Arc<State>,
    mut kill: watch::Receiver<u64>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let lose = state
                .lose_replies
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                .is_ok();
            if lose {
                state.lost.fetch_add(1, Ordering::SeqCst);
                return; // drop the reply and the connection
            }
            while state.paused.load(Ordering::Relaxed) {
                tokio::task::yield_now().await;
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = kill.changed() => {}
    }
}
