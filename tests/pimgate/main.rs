//! The one integration-test binary: real pimgate servers on `127.0.0.1:0` over real SQLite
//! files and real PostgreSQL schemas (one per test).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test and benchmark code fails loudly at the line that broke"
)]

mod helpers;

mod access;
mod cli;
mod contracts;
mod deploy;
mod errors;
mod hostile;
mod idp;
mod ops;
mod scim_api;
mod sessions;
mod sso;
mod store_story;
