//! The shared fault checks on the in-memory backend, plus the proxy's own behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sched_memory::{Fault, MemoryRepository};
use sched_tests::faults::{self, run_bursts_with_faults};
use sched_tests::proxy::FaultProxy;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn lost_reserve_reply_is_resolved() {
    faults::check_lost_reserve_reply_is_resolved(Arc::new(MemoryRepository::new())).await;
}

#[tokio::test]
async fn lost_release_reply_is_idempotent() {
    faults::check_lost_release_reply_is_idempotent(Arc::new(MemoryRepository::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_survive_failures_and_lost_replies() {
    let repo = MemoryRepository::new();
    let injector = repo.clone();
    let run = run_bursts_with_faults(Arc::new(repo), "mem-faults", 30, 50, move |b| {
        let r = injector.clone();
        async move {
            // Alternate: a failed call, a lost reply, a forced conflict.
            let f = [Fault::Fail, Fault::LoseReply, Fault::Conflict][b % 3].clone();
            r.faults().push(f, 1);
            1
        }
    })
    .await;
    assert_eq!(run.faults, 30);
    assert_eq!(run.placements, 30 * 50, "{run:?}");
    assert!(run.invariants.clean(), "{run:?}");
}

async fn echo_server() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn proxy_forwards_loses_replies_and_kills() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut c = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");

    proxy.lose_next_replies(1);
    c.write_all(b"lost").await.unwrap();
    let n = c.read(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "the reply is swallowed and the connection closed");
    assert_eq!(proxy.lost(), 1);

    let mut c2 = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    c2.write_all(b"abcd").await.unwrap();
    c2.read_exact(&mut buf).await.unwrap();
    assert_eq!(proxy.kill_all(), 1);
    let n = c2.read(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "killed connection is closed");
}
