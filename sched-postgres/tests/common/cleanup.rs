//! Clean-up from a `Drop`: shared by `common` (the test schema), `tls_common` (the TLS test
//! schema) and the roles of `privileges.rs`.

use sqlx::{Connection, PgConnection};

/// Runs `statements` in order on a connection of its own to `url`, on a thread of its own (a
/// `Drop` runs inside the test's runtime, which it cannot block on), so it runs even when the
/// test panicked. A failure is only warned about, naming `what` was left behind.
pub fn run_on_drop(url: &str, statements: Vec<String>, what: &str) {
    let url = url.to_owned();
    let done = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let mut c = PgConnection::connect(&url).await?;
            for sql in statements {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await?;
            }
            c.close().await
        })
        .map_err(std::io::Error::other)
    })
    .join();
    if !matches!(done, Ok(Ok(()))) {
        eprintln!("warning: could not drop {what}: {done:?}");
    }
}
