//! The Lua scripts (`lua/*.lua`), each with its SHA1 for `EVALSHA`: one script per store
//! operation, atomic on the worker's (or container's) slot.

use std::sync::LazyLock;

/// One Lua script and its SHA1.
#[derive(Debug)]
pub(crate) struct Script {
    /// The file name without `.lua` (fault injection matches scripts by it).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) name: &'static str,
    pub(crate) body: &'static str,
    pub(crate) sha: String,
}

macro_rules! script {
    ($id:ident, $file:literal) => {
        pub(crate) static $id: LazyLock<Script> = LazyLock::new(|| {
            let body = include_str!(concat!("../lua/", $file));
            let sha = sha1_smol::Sha1::from(body).digest().to_string();
            let name = $file.trim_end_matches(".lua");
            Script { name, body, sha }
        });
    };
}

script!(RESERVE, "reserve.lua");
script!(RELEASE, "release.lua");
script!(REGISTER, "register.lua");
script!(REMOVE, "remove.lua");
script!(SNAPSHOT, "snapshot.lua");
script!(RECONCILE, "reconcile.lua");
script!(CLAIM, "claim.lua");
script!(UNCLAIM, "unclaim.lua");
script!(FENCE, "fence.lua");
script!(WORKER, "worker.lua");
script!(WORKERS, "workers.lua");
script!(ENLIST, "enlist.lua");
script!(PRUNE, "prune.lua");
script!(RENEW, "renew.lua");
script!(EXPIRE, "expire.lua");
script!(HEARTBEAT, "heartbeat.lua");
script!(SET_STATUS, "set_status.lua");
#[cfg(feature = "testing")]
script!(CORRUPT, "corrupt.lua");
