//! The Lua scripts, loaded once from `lua/*.lua` with their SHA1 digests.

use std::sync::LazyLock;

/// One Lua script and its SHA1 (for `EVALSHA`).
#[derive(Debug)]
pub(crate) struct Script {
    pub(crate) name: &'static str,
    pub(crate) body: &'static str,
    pub(crate) sha: String,
}

impl Script {
    fn new(name: &'static str, body: &'static str) -> Self {
        Script {
            name,
            body,
            sha: sha1_smol::Sha1::from(body).digest().to_string(),
        }
    }
}

macro_rules! script {
    ($id:ident, $file:literal) => {
        pub(crate) static $id: LazyLock<Script> =
            LazyLock::new(|| Script::new($file, include_str!(concat!("../lua/", $file))));
    };
}

script!(RESERVE, "reserve.lua");
script!(RELEASE, "release.lua");
script!(REGISTER, "register.lua");
script!(REMOVE, "remove.lua");
script!(SNAPSHOT, "snapshot.lua");
script!(RECONCILE, "reconcile.lua");
script!(CLAIM, "claim.lua");
script!(CAD, "cad.lua");
script!(UNCLAIM, "unclaim.lua");
script!(CORRUPT, "corrupt.lua");
