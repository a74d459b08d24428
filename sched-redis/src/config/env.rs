//! [`RedisConfig::from_env`]: the configuration from environment variables.

use super::RedisConfig;
use sched_core::RepoError;
use std::time::Duration;

/// Single node URL (used when [`CLUSTER_URLS`] is not set).
const URL: &str = "REDIS_URL";
/// Comma-separated cluster seed URLs (wins over [`URL`]).
const CLUSTER_URLS: &str = "REDIS_CLUSTER_URLS";
const PREFIX: &str = "SCHED_REDIS_PREFIX";
const USERNAME: &str = "SCHED_REDIS_USERNAME";
const PASSWORD: &str = "SCHED_REDIS_PASSWORD";
const CONNECT_TIMEOUT: &str = "SCHED_REDIS_CONNECT_TIMEOUT_MS";
const RESPONSE_TIMEOUT: &str = "SCHED_REDIS_RESPONSE_TIMEOUT_MS";
const RECONNECT_RETRIES: &str = "SCHED_REDIS_RECONNECT_RETRIES";
/// PEM file of the CA bundle to trust (feature `tls`).
const TLS_CA_FILE: &str = "SCHED_REDIS_TLS_CA_FILE";
/// PEM file of the client certificate (mutual TLS; with [`TLS_CLIENT_KEY`]).
const TLS_CLIENT_CERT: &str = "SCHED_REDIS_TLS_CLIENT_CERT";
/// PEM file of the client key (with [`TLS_CLIENT_CERT`]).
const TLS_CLIENT_KEY: &str = "SCHED_REDIS_TLS_CLIENT_KEY";

/// Every variable [`RedisConfig::from_env_vars`] reads.
const ALL: [&str; 11] = [
    URL,
    CLUSTER_URLS,
    PREFIX,
    USERNAME,
    PASSWORD,
    CONNECT_TIMEOUT,
    RESPONSE_TIMEOUT,
    RECONNECT_RETRIES,
    TLS_CA_FILE,
    TLS_CLIENT_CERT,
    TLS_CLIENT_KEY,
];

/// `Misconfigured`, naming the variable at fault (never its value when it is a secret).
fn bad(var: &str, reason: impl std::fmt::Display) -> RepoError {
    RepoError::Misconfigured {
        endpoint: var.to_owned(),
        reason: format!("{var}: {reason}"),
    }
}

/// A whole number (`min` or more) from `var`, or `None` when unset.
fn number(
    get: &dyn Fn(&str) -> Option<String>,
    var: &str,
    min: u64,
) -> Result<Option<u64>, RepoError> {
    let Some(s) = get(var) else { return Ok(None) };
    match s.trim().parse::<u64>() {
        Ok(n) if n >= min => Ok(Some(n)),
        Ok(n) => Err(bad(var, format!("{n} is below the minimum {min}"))),
        Err(_) => Err(bad(var, format!("{s:?} is not a whole number"))),
    }
}

impl RedisConfig {
    /// The configuration from the process environment:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `REDIS_CLUSTER_URLS` | comma-separated seed URLs of a Redis Cluster (wins when set) |
    /// | `REDIS_URL` | the single node's URL (when `REDIS_CLUSTER_URLS` is not set) |
    /// | `SCHED_REDIS_PREFIX` | key prefix (default `sched`) |
    /// | `SCHED_REDIS_USERNAME`, `SCHED_REDIS_PASSWORD` | ACL user and password (override the URL's) |
    /// | `SCHED_REDIS_CONNECT_TIMEOUT_MS`, `SCHED_REDIS_RESPONSE_TIMEOUT_MS` | timeouts in ms, at least 1 (defaults 2000, 5000) |
    /// | `SCHED_REDIS_RECONNECT_RETRIES` | reconnection attempts (default 2) |
    /// | `SCHED_REDIS_TLS_CA_FILE` | PEM file of the CA bundle to trust instead of the web roots (feature `tls`) |
    /// | `SCHED_REDIS_TLS_CLIENT_CERT`, `SCHED_REDIS_TLS_CLIENT_KEY` | PEM files of the client certificate and key, both or neither (mutual TLS, feature `tls`) |
    ///
    /// An empty variable counts as unset. Fails with [`RepoError::Misconfigured`], whose
    /// `endpoint` names the variable at fault, when neither URL variable is set, a URL is not a
    /// `redis://` / `rediss://` URL, a number does not parse or a variable is not Unicode.
    /// Messages never show a password. See [`from_env_vars`](Self::from_env_vars) to read from
    /// anything else (tests: setting variables in a multi-threaded process is unsound).
    pub fn from_env() -> Result<Self, RepoError> {
        for var in ALL {
            if let Err(std::env::VarError::NotUnicode(_)) = std::env::var(var) {
                return Err(bad(var, "not valid Unicode"));
            }
        }
        Self::from_env_vars(|var| std::env::var(var).ok())
    }

    /// [`from_env`](Self::from_env) with the variables read through `get` (`None`: unset).
    ///
    /// ```
    /// use sched_redis::RedisConfig;
    /// use std::collections::HashMap;
    /// let vars = HashMap::from([
    ///     ("REDIS_URL", "redis://127.0.0.1:6379"),
    ///     ("SCHED_REDIS_PREFIX", "prod"),
    ///     ("SCHED_REDIS_RESPONSE_TIMEOUT_MS", "1500"),
    /// ]);
    /// let cfg = RedisConfig::from_env_vars(|k| vars.get(k).map(|v| v.to_string()))?;
    /// assert_eq!(cfg.key_prefix, "prod");
    /// assert_eq!(cfg.response_timeout, std::time::Duration::from_millis(1500));
    /// # Ok::<(), sched_core::RepoError>(())
    /// ```
    pub fn from_env_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, RepoError> {
        let get = |var: &str| get(var).filter(|v| !v.trim().is_empty());
        let (mut cfg, source) = match (get(CLUSTER_URLS), get(URL)) {
            (Some(seeds), _) => {
                let urls: Vec<&str> = seeds.split(',').map(str::trim).collect();
                let urls: Vec<&str> = urls.into_iter().filter(|u| !u.is_empty()).collect();
                if urls.is_empty() {
                    return Err(bad(CLUSTER_URLS, "holds no URL"));
                }
                (RedisConfig::cluster(urls), CLUSTER_URLS)
            }
            (None, Some(url)) => (RedisConfig::from_url(url.trim()), URL),
            (None, None) => {
                return Err(bad(
                    URL,
                    format!("neither {URL} (one node) nor {CLUSTER_URLS} (cluster) is set"),
                ))
            }
        };
        // The URL's own check names host:port only, never credentials.
        if let Err(e) = cfg.check() {
            return Err(match e {
                RepoError::Misconfigured { endpoint, reason } => {
                    bad(source, format!("{endpoint}: {reason}"))
                }
                e => bad(source, e),
            });
        }
        if let Some(prefix) = get(PREFIX) {
            cfg.key_prefix = prefix;
        }
        if let Some(user) = get(USERNAME) {
            cfg.username = Some(user);
        }
        if let Some(password) = get(PASSWORD) {
            cfg.password = Some(password);
        }
        if let Some(ms) = number(&get, CONNECT_TIMEOUT, 1)? {
            cfg.connect_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = number(&get, RESPONSE_TIMEOUT, 1)? {
            cfg.response_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = number(&get, RECONNECT_RETRIES, 0)? {
            cfg.reconnect_retries = usize::try_from(n)
                .map_err(|_| bad(RECONNECT_RETRIES, format!("{n} is too large")))?;
        }
        tls(&get, &mut cfg)?;
        Ok(cfg)
    }
}

/// The TLS variables: files are read when connecting. Without feature `tls` a TLS variable is
/// refused rather than ignored.
fn tls(get: &dyn Fn(&str) -> Option<String>, cfg: &mut RedisConfig) -> Result<(), RepoError> {
    let (ca, cert, key) = (get(TLS_CA_FILE), get(TLS_CLIENT_CERT), get(TLS_CLIENT_KEY));
    if ca.is_none() && cert.is_none() && key.is_none() {
        return Ok(());
    }
    #[cfg(feature = "tls")]
    {
        let mut tls = crate::RedisTls::new();
        if let Some(ca) = ca {
            tls = tls.with_ca_file(ca.trim());
        }
        match (cert, key) {
            (Some(cert), Some(key)) => tls = tls.with_client_cert_files(cert.trim(), key.trim()),
            (Some(_), None) => {
                return Err(bad(
                    TLS_CLIENT_KEY,
                    format!("not set, {TLS_CLIENT_CERT} is"),
                ))
            }
            (None, Some(_)) => {
                return Err(bad(
                    TLS_CLIENT_CERT,
                    format!("not set, {TLS_CLIENT_KEY} is"),
                ))
            }
            (None, None) => {}
        }
        cfg.tls = Some(tls);
        cfg.check().map_err(|e| bad(TLS_CA_FILE, e))
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = (cert, key, cfg);
        Err(bad(
            TLS_CA_FILE,
            "TLS settings need sched-redis's feature `tls`",
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use std::collections::HashMap;

    const SECRET: &str = "s3cret-never-shown";

    fn from(vars: &[(&str, &str)]) -> Result<RedisConfig, RepoError> {
        let m: HashMap<String, String> = (vars.iter())
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        RedisConfig::from_env_vars(|k| m.get(k).cloned())
    }

    /// The variable named as the endpoint and in the message, and no secret anywhere.
    fn misconfigured(e: RepoError, var: &str) {
        let shown = format!("{e} / {e:?}");
        assert!(!shown.contains(SECRET), "secret shown: {shown}");
        match e {
            RepoError::Misconfigured { endpoint, reason } => {
                assert_eq!(endpoint, var);
                assert!(reason.contains(var), "{reason}");
            }
            e => panic!("not Misconfigured: {e:?}"),
        }
    }

    #[test]
    fn a_single_node_with_defaults() {
        let cfg = from(&[(URL, "redis://h:6380/2")]).unwrap();
        let d = RedisConfig::from_url("redis://h:6380/2");
        assert_eq!(cfg.urls, d.urls);
        assert!(!cfg.cluster);
        assert_eq!((cfg.username, cfg.password), (None, None));
        assert_eq!(cfg.key_prefix, d.key_prefix);
        assert_eq!(cfg.connect_timeout, d.connect_timeout);
        assert_eq!(cfg.response_timeout, d.response_timeout);
        assert_eq!(cfg.reconnect_retries, d.reconnect_retries);
    }

    #[test]
    fn every_variable_is_read() {
        let cfg = from(&[
            (URL, "redis://ignored:1"),
            (CLUSTER_URLS, " redis://a:7001 ,redis://b:7002,, "),
            (PREFIX, "prod-eu"),
            (USERNAME, "sched"),
            (PASSWORD, SECRET),
            (CONNECT_TIMEOUT, "250"),
            (RESPONSE_TIMEOUT, " 9000 "),
            (RECONNECT_RETRIES, "0"),
        ])
        .unwrap();
        assert_eq!(cfg.urls, ["redis://a:7001", "redis://b:7002"]);
        assert!(cfg.cluster);
        assert_eq!(cfg.key_prefix, "prod-eu");
        assert_eq!(cfg.username.as_deref(), Some("sched"));
        assert_eq!(cfg.password.as_deref(), Some(SECRET));
        assert_eq!(cfg.connect_timeout, Duration::from_millis(250));
        assert_eq!(cfg.response_timeout, Duration::from_millis(9000));
        assert_eq!(cfg.reconnect_retries, 0);
        assert!(!format!("{cfg:?}").contains(SECRET));
    }

    #[test]
    fn an_empty_variable_counts_as_unset() {
        let cfg = from(&[(CLUSTER_URLS, ""), (URL, "redis://h:1"), (PREFIX, " ")]).unwrap();
        assert!(!cfg.cluster);
        assert_eq!(cfg.urls, ["redis://h:1"]);
        assert_eq!(cfg.key_prefix, "sched");
    }

    #[test]
    fn bad_numbers_name_their_variable_and_no_secret() {
        for (var, value) in [
            (CONNECT_TIMEOUT, "2s"),
            (RESPONSE_TIMEOUT, "-1"),
            (RESPONSE_TIMEOUT, "0"),
            (RECONNECT_RETRIES, "many"),
            (CONNECT_TIMEOUT, "99999999999999999999999"),
        ] {
            let e = from(&[
                (URL, &format!("redis://u:{SECRET}@h:1")),
                (PASSWORD, SECRET),
                (var, value),
            ])
            .unwrap_err();
            assert!(e.needs_operator() && !e.is_transient(), "{e:?}");
            assert!(e.to_string().contains(value.trim()), "{var}={value}: {e}");
            misconfigured(e, var);
        }
    }

    #[test]
    fn neither_url_is_misconfigured() {
        let e = from(&[(PREFIX, "p"), (PASSWORD, SECRET)]).unwrap_err();
        assert!(e.to_string().contains(CLUSTER_URLS), "{e}");
        misconfigured(e, URL);
        misconfigured(from(&[(CLUSTER_URLS, " , ")]).unwrap_err(), CLUSTER_URLS);
    }

    #[test]
    fn a_bad_url_is_refused_without_its_password() {
        let e = from(&[(URL, &format!("http://u:{SECRET}@h:1"))]).unwrap_err();
        assert!(e.to_string().contains("h:1"), "{e}");
        misconfigured(e, URL);
        let seeds = format!("redis://a:1,redis://u:{SECRET}@b:2:x");
        misconfigured(from(&[(CLUSTER_URLS, &seeds)]).unwrap_err(), CLUSTER_URLS);
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_files_are_read_and_a_lone_cert_or_key_is_refused() {
        let url = (URL, "rediss://h:6390");
        let cfg = from(&[url, (TLS_CA_FILE, "/etc/ca.pem")]).unwrap();
        let tls = format!("{:?}", cfg.tls);
        assert!(
            tls.contains("/etc/ca.pem") && tls.contains("client_cert_and_key: None"),
            "{tls}"
        );
        let cfg = from(&[url, (TLS_CLIENT_CERT, "/c.pem"), (TLS_CLIENT_KEY, "/c.key")]).unwrap();
        let tls = format!("{:?}", cfg.tls);
        assert!(tls.contains("\"/c.pem\", \"/c.key\""), "{tls}");
        misconfigured(
            from(&[url, (TLS_CLIENT_CERT, "/c.pem")]).unwrap_err(),
            TLS_CLIENT_KEY,
        );
        misconfigured(
            from(&[url, (TLS_CLIENT_KEY, "/c.key")]).unwrap_err(),
            TLS_CLIENT_CERT,
        );
        let plain = (URL, "redis://h:6379");
        misconfigured(
            from(&[plain, (TLS_CA_FILE, "/ca.pem")]).unwrap_err(),
            TLS_CA_FILE,
        );
        assert!(from(&[url]).unwrap().tls.is_none());
    }
}
