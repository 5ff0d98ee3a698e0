//! The deadline of the request being served, so work below the HTTP layer (a database
//! statement) stops when the request's time is up instead of outliving it.
//!
//! The router sets it for every request ([`scope`]); the store reads it ([`current`]) when it
//! takes a connection: PostgreSQL statements run under `statement_timeout`, SQLite statements
//! under a progress handler that interrupts them at the deadline.

use std::future::Future;
use std::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `work` with `deadline` as the deadline of everything it does.
pub async fn scope<F: Future>(deadline: Instant, work: F) -> F::Output {
    DEADLINE.scope(deadline, work).await
}

/// The deadline of the request being served, if there is one.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}
