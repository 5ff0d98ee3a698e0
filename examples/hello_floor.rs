//! The HTTP floor for `scripts/bench/run`: the smallest axum server on a multi-threaded tokio
//! runtime. `GET /` answers a short text body; nothing else happens per request (no
//! middleware, no auth, no store), so its requests/s is the ceiling any axum service on this
//! machine can reach with the same load generator.
//!
//! Run: `cargo run --release --example hello_floor -- [ADDR]` (default `127.0.0.1:0`); prints
//! `listening on http://ADDR` on stdout once bound.

use axum::{Router, routing::get};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let app = Router::new().route("/", get(|| async { "hello, floor\n" }));
    axum::serve(listener, app).await
}
