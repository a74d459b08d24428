//! One module per store operation, each next to its script under `lua/`.

pub(crate) mod audit;
pub(crate) mod find;
pub(crate) mod list;
pub(crate) mod register;
pub(crate) mod release;
pub(crate) mod remove;
pub(crate) mod reserve;
