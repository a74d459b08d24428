//! The small interface over the two Redis clients (redis-rs and fred): one pipelined round trip
//! of plain commands. All semantics live above it, written once.

use crate::config::RedisConfig;
use crate::scripts::Script;
use async_trait::async_trait;
use sched_core::{BoxError, RepoError};

/// One command's reply: a value, or the server's error reply to that one command.
pub(crate) type Reply = Result<redis::Value, String>;

/// A command's words packed in one buffer: one allocation for a burst's ~900 words instead of
/// one `String` each, written in place (keys, numbers) and handed to fred as slices of one
/// shared buffer (`client_fred.rs`). Every word is UTF-8 (only `&str` and digits go in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Args {
    data: Vec<u8>,
    /// End offset of each word in `data`.
    ends: Vec<usize>,
}

impl Args {
    /// Room for `words` words of `bytes` bytes in all.
    pub(crate) fn with_capacity(words: usize, bytes: usize) -> Self {
        let (data, ends) = (Vec::with_capacity(bytes), Vec::with_capacity(words));
        Args { data, ends }
    }

    /// Appends one word.
    pub(crate) fn push(&mut self, word: &str) {
        self.data.extend_from_slice(word.as_bytes());
        self.end();
    }

    /// Appends `n` in decimal (what `n.to_string()` would send).
    pub(crate) fn push_u64(&mut self, n: u64) {
        self.append_u64(n);
        self.end();
    }

    /// Appends `n` in decimal, or the empty word for `None`.
    pub(crate) fn push_opt(&mut self, n: Option<u64>) {
        if let Some(n) = n {
            self.append_u64(n);
        }
        self.end();
    }

    /// Appends `piece` to the word being written (finished by [`end`](Self::end)).
    pub(crate) fn append(&mut self, piece: &str) {
        self.data.extend_from_slice(piece.as_bytes());
    }

    /// Appends `n` in decimal to the word being written.
    pub(crate) fn append_u64(&mut self, mut n: u64) {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.data.extend_from_slice(&buf[i..]);
    }

    /// Finishes the word being written.
    pub(crate) fn end(&mut self) {
        self.ends.push(self.data.len());
    }

    /// The word at `i`.
    pub(crate) fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.data.get(start..end)
    }

    /// Each word's byte range in [`bytes`](Self::bytes), in order.
    pub(crate) fn ranges(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(s, e)| s..e)
    }

    /// Every word, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.ranges().map(|r| &self.data[r])
    }

    /// The whole buffer (the words back to back).
    #[cfg(feature = "fred")]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.data
    }
}

impl<S: AsRef<str>> FromIterator<S> for Args {
    fn from_iter<I: IntoIterator<Item = S>>(words: I) -> Self {
        let mut a = Args::default();
        for w in words {
            a.push(w.as_ref());
        }
        a
    }
}

/// One command of a pipeline: `name [script] args...`.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    /// `EVALSHA`, `EVAL`, `GET`, ...
    pub(crate) name: &'static str,
    /// The script of an `EVALSHA` (sent as its SHA1) or `EVAL` (sent as its body).
    pub(crate) script: Option<&'static Script>,
    /// After the script: `numkeys keys... argv...`; without one, the key comes first.
    pub(crate) args: Args,
}

impl Op {
    /// `name args...`.
    pub(crate) fn cmd(name: &'static str, args: Vec<String>) -> Self {
        let script = None;
        let args = args.into_iter().collect();
        Op { name, script, args }
    }

    /// `EVALSHA sha numkeys keys... argv...`.
    pub(crate) fn script(script: &'static Script, keys: Vec<String>, argv: Vec<String>) -> Self {
        let bytes = (keys.iter().chain(&argv)).map(String::len).sum::<usize>() + 8;
        let mut args = Args::with_capacity(1 + keys.len() + argv.len(), bytes);
        args.push_u64(keys.len() as u64);
        keys.iter().chain(&argv).for_each(|w| args.push(w));
        Self::packed(script, args)
    }

    /// `EVALSHA sha` and `args` (already `numkeys keys... argv...`).
    pub(crate) fn packed(script: &'static Script, args: Args) -> Self {
        let (name, script) = ("EVALSHA", Some(script));
        Op { name, script, args }
    }

    /// The script's SHA1 or body (`EVAL`), sent before [`args`](Self::args); none for a plain
    /// command.
    pub(crate) fn head(&self) -> Option<&'static str> {
        match self.script {
            Some(s) if self.name == "EVAL" => Some(s.body),
            s => s.map(|s| s.sha.as_str()),
        }
    }

    /// Everything after the command name, as sent.
    pub(crate) fn wire_args(&self) -> impl Iterator<Item = &[u8]> {
        let head = self.head().map(str::as_bytes);
        head.into_iter().chain(self.args.iter())
    }

    /// The key a cluster routes this command by (a script's first key; none: any node).
    #[cfg(feature = "fred")]
    pub(crate) fn route_key(&self) -> Option<&[u8]> {
        match self.script {
            Some(_) if self.args.get(0) == Some(b"0") => None,
            Some(_) => self.args.get(1),
            None => self.args.get(0),
        }
    }
}

/// What a failed connection attempt was, as each client tells from its own errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectFault {
    /// Refused, unresolvable, timed out: transient.
    Unreachable,
    /// The server refused the credentials.
    Unauthorized,
    /// The settings cannot work (a malformed URL, a wrong scheme).
    Misconfigured,
    /// Anything else (nothing was sent).
    Other,
}

/// The typed error of a failed connection to the store of `cfg`: names the endpoint (and the
/// user, for refused credentials), never a password.
pub(crate) fn connect_error(cfg: &RedisConfig, fault: ConnectFault, e: BoxError) -> RepoError {
    let endpoint = cfg.endpoint();
    match fault {
        ConnectFault::Unreachable => RepoError::Unreachable {
            endpoint,
            source: e,
        },
        ConnectFault::Unauthorized => RepoError::Unauthorized {
            endpoint,
            user: cfg.user(),
            source: e,
        },
        ConnectFault::Misconfigured => RepoError::Misconfigured {
            endpoint,
            reason: e.to_string(),
        },
        ConnectFault::Other => RepoError::Unavailable(e),
    }
}

/// True for a server's `NOPERM` reply: the ACL user may not run that command or touch that key.
/// Redis checks this before running the command, so nothing of that command was applied (a
/// script refused a command *inside* it answers `ERR ... can't run this command` instead, after
/// whatever it wrote before: that one stays `Backend`).
pub(crate) fn is_noperm(reply: &str) -> bool {
    reply.starts_with("NOPERM")
}

/// A `NOPERM` reply of the store of `cfg` as [`RepoError::Unauthorized`] (not transient: the
/// same call fails the same way until the ACL is fixed), naming the endpoint and the user,
/// never the password (the server's message names neither).
pub(crate) fn noperm_error(cfg: &RedisConfig, reply: &str) -> RepoError {
    RepoError::Unauthorized {
        endpoint: cfg.endpoint(),
        user: cfg.user(),
        source: reply.to_owned().into(),
    }
}

/// A failed request as [`RepoError`], for both clients: certainly not sent (`refused`) is
/// `Unavailable`; a lost reply is `Ambiguous` for a write and `Unavailable` for a read; anything
/// else is `Backend`.
pub(crate) fn classify<E>(e: E, refused: bool, lost: bool, write: bool) -> RepoError
where
    E: std::error::Error + Send + Sync + 'static,
{
    match (refused || (lost && !write), lost) {
        (true, _) => RepoError::Unavailable(Box::new(e)),
        (false, true) => RepoError::Ambiguous(Box::new(e)),
        (false, false) => RepoError::Backend(Box::new(e)),
    }
}

/// A connection of its own to one node (never the shared one), for blocking commands: the
/// wake-up streams' `XREAD BLOCK`. Closed when dropped.
#[async_trait]
pub(crate) trait Dedicated: Send {
    /// One command (`args[0]` is its name); a server error reply is `Ok(Err(..))`.
    async fn call(&mut self, args: Vec<String>) -> Result<Reply, RepoError>;
}

/// One pipelined round trip to Redis; failures are [`classify`]'d.
#[async_trait]
pub(crate) trait Client: Send + Sync + 'static {
    /// Sends `ops` in one pipeline and returns one reply per op, in order.
    async fn pipeline(&self, ops: &[Op], write: bool) -> Result<Vec<Reply>, RepoError>;

    /// Opens a [`Dedicated`] connection to the single node at `url` (credentials and timeouts
    /// from `cfg`, the response timeout raised by `block`), with the same client library.
    async fn dedicated(
        &self,
        cfg: &crate::RedisConfig,
        url: &str,
        block: std::time::Duration,
    ) -> Result<Box<dyn Dedicated>, RepoError>;

    /// Every key matching `pattern`, on every node.
    #[cfg(feature = "testing")]
    async fn keys_matching(&self, pattern: &str) -> Result<Vec<String>, RepoError>;

    /// `INFO commandstats` of every node (on a cluster every primary, or every node), one text
    /// per node.
    #[cfg(feature = "testing")]
    async fn command_stats(&self) -> Result<Vec<String>, RepoError>;
}
