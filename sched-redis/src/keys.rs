//! Key names (ARCHITECTURE.md, "Key layout"): ids are percent-encoded, so they never break the
//! layout or the hash tags.

use crate::client::Args;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Every byte outside `[A-Za-z0-9._-]` is percent-encoded in a key.
const ID: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// Percent-encodes every byte outside `[A-Za-z0-9._-]` (upper-case hex).
pub(crate) fn encode(id: &str) -> String {
    utf8_percent_encode(id, ID).to_string()
}

/// All key names of one deployment (one prefix).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: encode(prefix),
        }
    }

    /// `SCAN MATCH` pattern covering every key of this prefix.
    #[cfg(feature = "testing")]
    pub(crate) fn pattern(&self) -> String {
        format!("{{{}:*", self.prefix)
    }

    fn part(&self, worker_id: &str, part: &str) -> String {
        format!("{{{}:w:{}}}:{part}", self.prefix, encode(worker_id))
    }

    /// A worker script's keys: its state hash and its ledger.
    pub(crate) fn worker(&self, worker_id: &str) -> Vec<String> {
        vec![self.state(worker_id), self.ledger(worker_id)]
    }

    /// The keys of reserve.lua and fence.lua: state hash, ledger, fence set.
    pub(crate) fn fenced(&self, worker_id: &str) -> Vec<String> {
        vec![
            self.state(worker_id),
            self.ledger(worker_id),
            self.fence(worker_id),
        ]
    }

    /// The fence set of the cluster claim protocol: tokens revoked or consumed at the current
    /// fence epoch.
    pub(crate) fn fence(&self, worker_id: &str) -> String {
        self.part(worker_id, "fence")
    }

    pub(crate) fn state(&self, worker_id: &str) -> String {
        self.part(worker_id, "state")
    }

    pub(crate) fn ledger(&self, worker_id: &str) -> String {
        self.part(worker_id, "ledger")
    }

    /// The worker's events stream: one entry per committed reserve (wake-ups).
    pub(crate) fn events(&self, worker_id: &str) -> String {
        self.part(worker_id, "events")
    }

    /// The encoded prefix (names the wake-up connections).
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn tomb(&self, worker_id: &str) -> String {
        self.part(worker_id, "tomb")
    }

    pub(crate) fn index(&self, container_id: &str) -> String {
        format!("{{{}:c:{}}}", self.prefix, encode(container_id))
    }

    /// Appends `{P:w:<worker>}:<part>` to `a` as one word, written in place (as
    /// [`state`](Self::state) and the others spell it).
    pub(crate) fn push_part(&self, a: &mut Args, worker_id: &str, part: &str) {
        a.append("{");
        a.append(&self.prefix);
        a.append(":w:");
        utf8_percent_encode(worker_id, ID).for_each(|s| a.append(s));
        a.append("}:");
        a.append(part);
        a.end();
    }

    /// Appends a container's index key (as [`index`](Self::index) spells it) to `a`.
    pub(crate) fn push_index(&self, a: &mut Args, container_id: &str) {
        a.append("{");
        a.append(&self.prefix);
        a.append(":c:");
        utf8_percent_encode(container_id, ID).for_each(|s| a.append(s));
        a.append("}");
        a.end();
    }

    pub(crate) fn workers(&self) -> String {
        format!("{{{}:workers}}", self.prefix)
    }

    /// The generation of each id in the worker set (same slot as the set): bumped by every
    /// registration, so a prune can tell a re-registered id from a removed one.
    pub(crate) fn worker_gens(&self) -> String {
        format!("{{{}:workers}}:gen", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_awkward_ids() {
        assert_eq!(encode("worker-1_a.b"), "worker-1_a.b");
        assert_eq!(encode("{w}:1 %'\"é"), "%7Bw%7D%3A1%20%25%27%22%C3%A9");
        let k = Keys::new("p{x}");
        assert_eq!(k.state("{a}"), "{p%7Bx%7D:w:%7Ba%7D}:state");
        assert_eq!(k.index("c:1"), "{p%7Bx%7D:c:c%3A1}");
        // Exactly one '{' and one '}' in every key: the hash tag is the whole tagged part.
        let mut a = Args::default();
        k.push_part(&mut a, "{a}", "state");
        k.push_index(&mut a, "c:1");
        assert_eq!(a.get(0), Some(k.state("{a}").as_bytes()));
        assert_eq!(a.get(1), Some(k.index("c:1").as_bytes()));
        for key in [
            k.state("{a}"),
            k.ledger("}{"),
            k.index("{{"),
            k.workers(),
            k.worker_gens(),
        ] {
            assert_eq!(key.matches('{').count(), 1, "{key}");
            assert_eq!(key.matches('}').count(), 1, "{key}");
        }
    }
}
