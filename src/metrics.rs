//! `GET /metrics`: Prometheus metrics in the OpenMetrics text format, from a registry of the
//! application's own (part of the application state; no global recorder). Every name is
//! prefixed `pimgate_`; docs/operations.md says what to alert on.
//!
//! - `http_requests_total{route,method,status}`, `http_request_duration_seconds{route,method}`
//!   (the route is the matched pattern, never the raw path);
//! - `scim_operations_total{connection,resource,operation,outcome}`;
//! - `claims_cache_requests_total{result}` (`hit`, `miss`);
//! - `tokens_issued_total{client,kind}` (`id_token`, `access_token`, `refresh_token`);
//! - `upstream_request_duration_seconds{connection,endpoint}`,
//!   `upstream_errors_total{connection,endpoint}` (the connections' IdPs);
//! - `db_pool_connections{state}` (`idle`, `in_use`), `db_pool_max_connections` (read when
//!   scraped);
//! - `sessions_ended_total{reason}`, `backchannel_logout_deliveries_total{client,outcome}`;
//! - `log_lines_dropped_total` (log lines lost to a stalled standard error, [`crate::logging`]);
//! - `build_info{version}`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScimOp {
    connection: String,
    resource: &'static str,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheResult {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Issued {
    client: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Upstream {
    connection: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolState {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    client: String,
    outcome: String,
}

/// The label of an HTTP method: the standard ones by name, any other `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Database pool occupancy, read when scraped: (idle, in use, maximum).
pub type PoolProbe = Arc<dyn Fn() -> (u64, u64, u64) + Send + Sync>;

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

struct Inner {
    registry: Registry,
    http_requests: Family<RouteStatus, Counter>,
    http_duration: Family<Route, Histogram, fn() -> Histogram>,
    scim_operations: Family<ScimOp, Counter>,
    /// `claims_cache_requests_total{result="hit"}` and `{result="miss"}`, made at start (a
    /// read counts with one atomic add).
    claims_hits: Counter,
    claims_misses: Counter,
    tokens_issued: Family<Issued, Counter>,
    upstream_duration: Family<Upstream, Histogram, fn() -> Histogram>,
    upstream_errors: Family<Upstream, Counter>,
    pool_connections: Family<PoolState, Gauge>,
    pool_max: Gauge,
    sessions_ended: Family<Reason, Counter>,
    backchannel: Family<DeliveryLabels, Counter>,
    pool_probe: std::sync::RwLock<Option<PoolProbe>>,
    /// The configured connections: any other name is counted as `unknown`, so requests for
    /// made-up connections cannot grow the label set.
    connections: std::sync::RwLock<std::collections::BTreeSet<String>>,
}

/// The metrics (a cheap handle).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pimgate");
        registry.register(
            "build",
            "The pimgate build that is running",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let http_requests = Family::<RouteStatus, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by matched route, method and status",
            http_requests.clone(),
        );
        let http_duration: Family<Route, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by matched route and method",
            http_duration.clone(),
        );
        let scim_operations = Family::<ScimOp, Counter>::default();
        registry.register(
            "scim_operations",
            "SCIM operations, by connection, resource, operation and outcome (ok, client_error, server_error)",
            scim_operations.clone(),
        );
        let claims_cache = Family::<CacheResult, Counter>::default();
        registry.register(
            "claims_cache_requests",
            "Claims cache lookups, by result (hit, miss)",
            claims_cache.clone(),
        );
        let tokens_issued = Family::<Issued, Counter>::default();
        registry.register(
            "tokens_issued",
            "Tokens issued to clients, by client and kind",
            tokens_issued.clone(),
        );
        let upstream_duration: Family<Upstream, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "upstream_request_duration_seconds",
            "Time the connections' IdPs took to answer, by connection and endpoint",
            upstream_duration.clone(),
        );
        let upstream_errors = Family::<Upstream, Counter>::default();
        registry.register(
            "upstream_errors",
            "Calls to the connections' IdPs that failed, by connection and endpoint",
            upstream_errors.clone(),
        );
        let pool_connections = Family::<PoolState, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database pool connections, by state (idle, in_use)",
            pool_connections.clone(),
        );
        let pool_max = Gauge::default();
        registry.register(
            "db_pool_max_connections",
            "The database pool's maximum size",
            pool_max.clone(),
        );
        let sessions_ended = Family::<Reason, Counter>::default();
        registry.register(
            "sessions_ended",
            "Sign-in sessions ended, by reason",
            sessions_ended.clone(),
        );
        let backchannel = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "backchannel_logout_deliveries",
            "Back-channel logout tokens sent to clients, by client and outcome (delivered, refused, failed, dropped)",
            backchannel.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because standard error took no output for a while",
            crate::logging::lines_dropped().clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                http_requests,
                http_duration,
                scim_operations,
                claims_hits: claims_cache.get_or_create_owned(&CacheResult { result: "hit" }),
                claims_misses: claims_cache.get_or_create_owned(&CacheResult { result: "miss" }),
                tokens_issued,
                upstream_duration,
                upstream_errors,
                pool_connections,
                pool_max,
                sessions_ended,
                backchannel,
                pool_probe: std::sync::RwLock::new(None),
                connections: std::sync::RwLock::new(Default::default()),
            }),
        }
    }

    /// Where the database pool's occupancy is read from at each scrape.
    pub fn set_pool_probe(&self, probe: PoolProbe) {
        if let Ok(mut p) = self.inner.pool_probe.write() {
            *p = Some(probe);
        }
    }

    /// The configured connection names (labels of SCIM operations).
    pub fn set_connections(&self, names: impl IntoIterator<Item = String>) {
        if let Ok(mut c) = self.inner.connections.write() {
            *c = names.into_iter().collect();
        }
    }

    /// An answered request: `route` is the matched pattern (never the raw path); a method
    /// outside the standard ones is counted as `other`, so clients cannot grow the label set.
    pub fn http_request(&self, route: &str, method: &Method, status: u16, seconds: f64) {
        let method = method_label(method);
        self.inner
            .http_requests
            .get_or_create(&RouteStatus {
                route: route.to_owned(),
                method,
                status,
            })
            .inc();
        self.inner
            .http_duration
            .get_or_create(&Route {
                route: route.to_owned(),
                method,
            })
            .observe(seconds);
    }

    pub fn scim_operation(
        &self,
        connection: &str,
        resource: &'static str,
        operation: &'static str,
        status: u16,
    ) {
        let outcome = match status {
            500.. => "server_error",
            400..=499 => "client_error",
            _ => "ok",
        };
        let known = self
            .inner
            .connections
            .read()
            .is_ok_and(|c| c.contains(connection));
        self.inner
            .scim_operations
            .get_or_create(&ScimOp {
                connection: if known { connection } else { "unknown" }.to_owned(),
                resource,
                operation,
                outcome,
            })
            .inc();
    }

    pub fn claims_cache(&self, hit: bool) {
        if hit {
            self.inner.claims_hits.inc();
        } else {
            self.inner.claims_misses.inc();
        }
    }

    pub fn token_issued(&self, client: &str, kind: &'static str) {
        self.inner
            .tokens_issued
            .get_or_create(&Issued {
                client: client.to_owned(),
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn upstream_call(&self, connection: &str, endpoint: &'static str, seconds: f64, ok: bool) {
        let labels = Upstream {
            connection: connection.to_owned(),
            endpoint: endpoint.to_owned(),
        };
        self.inner
            .upstream_duration
            .get_or_create(&labels)
            .observe(seconds);
        if !ok {
            self.inner.upstream_errors.get_or_create(&labels).inc();
        }
    }

    pub fn session_ended(&self, reason: &str, count: u64) {
        self.inner
            .sessions_ended
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc_by(count);
    }

    pub fn backchannel_delivery(&self, client: &str, outcome: &str) {
        self.inner
            .backchannel
            .get_or_create(&DeliveryLabels {
                client: client.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The text exposition, with the pool gauges read now.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let probe = self.inner.pool_probe.read().ok().and_then(|p| p.clone());
        if let Some(probe) = probe {
            let (idle, in_use, max) = probe();
            let set = |state: &str, v: u64| {
                self.inner
                    .pool_connections
                    .get_or_create(&PoolState {
                        state: state.to_owned(),
                    })
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            };
            set("idle", idle);
            set("in_use", in_use);
            self.inner
                .pool_max
                .set(i64::try_from(max).unwrap_or(i64::MAX));
        }
        let mut body = String::new();
        encode(&mut body, &self.inner.registry)?;
        Ok(body)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub fn router<S>() -> Router<S>
where
    Metrics: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(m): State<Metrics>) -> Response {
    match m.render() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics could not be encoded");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_up_method_does_not_grow_the_label_set() {
        let m = Metrics::new();
        for method in ["FOO", "BAR", "PROPFIND"] {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            m.http_request("unmatched", &method, 405, 0.001);
        }
        m.http_request("/healthz", &Method::GET, 200, 0.001);
        let text = m.render().unwrap();
        assert!(
            text.contains(
                r#"pimgate_http_requests_total{route="unmatched",method="other",status="405"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"pimgate_http_requests_total{route="/healthz",method="GET",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            !text.contains("FOO") && !text.contains("PROPFIND"),
            "{text}"
        );
    }
}
