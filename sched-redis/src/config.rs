//! [`RedisConfig`]: where and how to connect.

#[cfg(feature = "serde")]
mod de;
mod env;

use std::fmt;
use std::time::Duration;

/// Connection settings for a [`RedisRepository`](crate::RedisRepository).
///
/// `Debug` never shows the password, neither the field nor one embedded in a URL.
///
/// Build one with [`from_url`](Self::from_url), [`cluster`](Self::cluster),
/// [`from_env`](Self::from_env) (or, feature `serde`, by deserializing it) and the `with_*`
/// methods; the fields stay public for reading and changing. The struct is `#[non_exhaustive]`,
/// so new settings can be added without breaking callers.
///
/// ```
/// use sched_redis::RedisConfig;
/// let cfg = RedisConfig::from_url("redis://127.0.0.1:6379")
///     .with_credentials("sched", "s3cret")
///     .with_prefix("prod");
/// assert!(!format!("{cfg:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Server URL(s): `redis://host:port[/db]` or `rediss://` for TLS. Standalone uses the first;
    /// cluster mode uses them all as seed nodes.
    pub urls: Vec<String>,
    /// Connect to a Redis Cluster (seed nodes in [`urls`](Self::urls)).
    pub cluster: bool,
    /// ACL user name (overrides one in the URL).
    pub username: Option<String>,
    /// Password (overrides one in the URL). Never printed.
    pub password: Option<String>,
    /// Prefix of every key, so several deployments or test runs can share one Redis.
    pub key_prefix: String,
    /// Timeout of one connection attempt.
    pub connect_timeout: Duration,
    /// Timeout of one request (a whole pipeline). A write that times out is reported as
    /// [`RepoError::Ambiguous`](sched_core::RepoError::Ambiguous).
    pub response_timeout: Duration,
    /// Reconnection attempts before a request fails with `Unavailable`.
    pub reconnect_retries: usize,
    /// TLS settings of `rediss://` URLs (`None`: the clients' defaults, the public web roots).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub tls: Option<crate::RedisTls>,
}

impl RedisConfig {
    /// Standalone server at `url`, prefix `sched`, 2 s connect and 5 s response timeouts.
    pub fn from_url(url: impl Into<String>) -> Self {
        RedisConfig {
            urls: vec![url.into()],
            cluster: false,
            username: None,
            password: None,
            key_prefix: "sched".to_owned(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            reconnect_retries: 2,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// A Redis Cluster reached through these seed URLs.
    pub fn cluster<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut cfg = Self::from_url(String::new());
        cfg.urls = urls.into_iter().map(Into::into).collect();
        cfg.cluster = true;
        cfg
    }

    /// Sets the ACL user and password.
    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// Sets the ACL user (overrides one in the URL), keeping the password.
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Sets the password (overrides one in the URL), keeping the user: without one, the
    /// password is the `default` user's (`AUTH <password>`).
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Sets the key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the connect and response timeouts.
    pub fn with_timeouts(mut self, connect: Duration, response: Duration) -> Self {
        self.connect_timeout = connect;
        self.response_timeout = response;
        self
    }

    /// Sets the timeout of one connection attempt.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the timeout of one request (a whole pipeline).
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets the TLS settings of `rediss://` URLs: a private CA, a client certificate, ... (a
    /// `redis://` URL with TLS settings is refused when connecting).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn with_tls(mut self, tls: crate::RedisTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the number of reconnection attempts.
    pub fn with_reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = retries;
        self
    }
}

impl RedisConfig {
    /// Where this configuration connects, for messages: `host:port` of each URL (a cluster's
    /// seeds joined by `,`), never credentials; an unparsable URL shows as `<unparsable URL>`.
    pub fn endpoint(&self) -> String {
        let one = |u: &String| match url::Url::parse(u) {
            Ok(u) => format!(
                "{}:{}",
                u.host_str().unwrap_or("localhost"),
                u.port().unwrap_or(6379)
            ),
            Err(_) => "<unparsable URL>".to_owned(),
        };
        let all: Vec<String> = self.urls.iter().map(one).collect();
        if all.is_empty() {
            "<no URL>".to_owned()
        } else {
            all.join(",")
        }
    }

    /// Refuses what no client could connect with: no URL, an unparsable one, or a scheme other
    /// than `redis`, `rediss`, `redis+unix` or `unix` (fred would read `http://h:6379` as
    /// Redis). Nothing is sent.
    pub(crate) fn check(&self) -> Result<(), sched_core::RepoError> {
        let bad = |reason: String| sched_core::RepoError::Misconfigured {
            endpoint: self.endpoint(),
            reason,
        };
        if self.urls.is_empty() {
            return Err(bad("no Redis URL".to_owned()));
        }
        for u in &self.urls {
            let parsed = url::Url::parse(u)
                .map_err(|e| bad(format!("not a URL ({e}): expected redis://host:port")))?;
            #[cfg(feature = "tls")]
            if self.tls.is_some() && parsed.scheme() != "rediss" {
                return Err(bad(format!(
                    "TLS settings need rediss:// URLs, not {}://",
                    parsed.scheme()
                )));
            }
            if !matches!(parsed.scheme(), "redis" | "rediss" | "redis+unix" | "unix") {
                return Err(bad(format!(
                    "unsupported scheme {:?}: expected redis:// or rediss://",
                    parsed.scheme()
                )));
            }
        }
        Ok(())
    }

    /// The ACL user that connects: the configured one, else the first URL's, else `default`.
    pub fn user(&self) -> String {
        let from_url = self
            .urls
            .first()
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| u.username().to_owned())
            .filter(|u| !u.is_empty());
        self.username
            .clone()
            .or(from_url)
            .unwrap_or_else(|| "default".to_owned())
    }
}

/// `scheme://user:password@host` → `scheme://user:***@host`.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RedisConfig");
        d.field(
            "urls",
            &self.urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>(),
        )
        .field("cluster", &self.cluster)
        .field("username", &self.username)
        .field("password", &self.password.as_ref().map(|_| "***"))
        .field("key_prefix", &self.key_prefix)
        .field("connect_timeout", &self.connect_timeout)
        .field("response_timeout", &self.response_timeout)
        .field("reconnect_retries", &self.reconnect_retries);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls);
        d.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_passwords() {
        let cfg = RedisConfig::from_url("rediss://alice:hunter2@example.invalid:6380/0")
            .with_credentials("bob", "correct horse");
        let s = format!("{cfg:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(!s.contains("correct horse"), "{s}");
        assert!(s.contains("alice:***@example.invalid:6380/0"), "{s}");
        assert!(s.contains("bob"), "{s}");
        let s = format!("{:?}", RedisConfig::from_url("redis://:pw@h:1"));
        assert!(!s.contains("pw@"), "{s}");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn endpoints_and_users_never_show_secrets() {
        let cfg = RedisConfig::from_url("rediss://alice:hunter2@example.invalid:6380/0");
        assert_eq!(cfg.endpoint(), "example.invalid:6380");
        assert_eq!(cfg.user(), "alice");
        let cfg = cfg.with_credentials("bob", "pw");
        assert_eq!(cfg.user(), "bob");
        let cluster = RedisConfig::cluster(["redis://a:7001", "redis://b"]);
        assert_eq!(cluster.endpoint(), "a:7001,b:6379");
        assert_eq!(cluster.user(), "default");
        assert_eq!(
            RedisConfig::from_url("not a url").endpoint(),
            "<unparsable URL>"
        );
    }
}
