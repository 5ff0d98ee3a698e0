//! The OpenID provider's HTTP surface. Handlers are thin: extract, call one
//! [`OidcProvider`] function, map the result.
//!
//! - `GET /.well-known/openid-configuration`: discovery (the issuer is `server.public_url`);
//! - `GET|POST /oauth/authorize`: the authorization endpoint (code flow);
//! - `GET /sso/{connection}/callback`: where a connection's IdP sends the browser back;
//! - `POST /oauth/token`: codes and refresh tokens for tokens;
//! - `GET|POST /oauth/userinfo`: the full claims document;
//! - `GET /oauth/jwks`: the public signing keys;
//! - `POST /oauth/revoke` (RFC 7009), `POST /oauth/introspect` (RFC 7662);
//! - `GET /oauth/permissions`: the order of the `permissions` bitset in tokens;
//! - `GET|POST /oauth/logout`: RP-initiated logout (`end_session_endpoint`), and
//!   `GET /sso/{connection}/logged-out`, where the IdP sends the browser back after its own;
//! - `POST /sso/{connection}/backchannel-logout`: the IdP's back-channel logout tokens.

use std::collections::BTreeMap;

use axum::extract::{DefaultBodyLimit, FromRef, Path, Query, RawForm, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;

use super::error::TokenFailure;
use super::service::{
    AuthorizeOutcome, CallbackOutcome, ClientCredentials, LogoutOutcome, OidcProvider,
};

pub fn router<S>() -> Router<S>
where
    OidcProvider: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oauth/authorize", get(authorize).post(authorize))
        .route("/sso/{connection}/callback", get(callback))
        .route("/oauth/token", axum::routing::post(token))
        .route("/oauth/userinfo", get(userinfo).post(userinfo))
        .route("/oauth/jwks", get(jwks))
        .route("/oauth/revoke", axum::routing::post(revoke))
        .route("/oauth/introspect", axum::routing::post(introspect))
        .route("/oauth/permissions", get(permissions))
        .route("/oauth/logout", get(logout).post(logout))
        .route("/sso/{connection}/logged-out", get(logged_out))
        .route(
            "/sso/{connection}/backchannel-logout",
            axum::routing::post(backchannel_logout),
        )
        // Forms of a few fields: anything larger is refused (413) before it is read.
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
}

/// The largest authorization or token request body read.
const MAX_FORM_BYTES: usize = 64 * 1024;

fn not_configured() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": "not_found", "detail": "single sign-on is not configured (server.public_url, [oidc.clients])"})),
    )
        .into_response()
}

fn cacheable(mut resp: Response, seconds: u32) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={seconds}")) {
        resp.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    resp
}

async fn discovery(State(op): State<OidcProvider>) -> Response {
    match op.discovery() {
        Some(doc) => cacheable(Json(doc).into_response(), 300),
        None => not_configured(),
    }
}

async fn jwks(State(op): State<OidcProvider>) -> Response {
    if op.issuer().is_none() {
        return not_configured();
    }
    match op.keys().jwks().await {
        Ok(doc) => cacheable(Json(doc).into_response(), 300),
        Err(e) => TokenFailure::from(e).into_response(),
    }
}

async fn permissions(State(op): State<OidcProvider>) -> Response {
    if op.issuer().is_none() {
        return not_configured();
    }
    cacheable(Json(op.permission_order()).into_response(), 60)
}

/// The parameters of a GET query or a POSTed form.
fn params(method: &Method, query: &str, form: &[u8]) -> BTreeMap<String, String> {
    let raw: &[u8] = if method == Method::POST {
        form
    } else {
        query.as_bytes()
    };
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(raw)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

async fn authorize(
    State(op): State<OidcProvider>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    RawForm(form): RawForm,
) -> Response {
    let params = params(&method, uri.query().unwrap_or_default(), &form);
    match op.authorize(&params, &cookies(&headers)).await {
        AuthorizeOutcome::ToIdp { location, cookie } => redirect_setting(&location, &[cookie]),
        AuthorizeOutcome::Choose(links) => super::pages::chooser(&links),
        AuthorizeOutcome::ErrorRedirect(location) => Redirect::to(&location).into_response(),
        AuthorizeOutcome::FromSession(location) => redirect_setting(&location, &[]),
        AuthorizeOutcome::Page(p) => p.into_response(),
    }
}

/// A redirect that sets cookies, never cached.
fn redirect_setting(location: &str, set: &[String]) -> Response {
    let mut resp = Redirect::to(location).into_response();
    for cookie in set {
        if let Ok(v) = HeaderValue::from_str(cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    no_store(resp)
}

fn logout_answer(outcome: LogoutOutcome) -> Response {
    match outcome {
        LogoutOutcome::Redirect {
            location,
            clear_cookie,
        } => redirect_setting(&location, &[clear_cookie]),
        LogoutOutcome::SignedOut { clear_cookie } => {
            let mut resp = super::pages::signed_out();
            if let Ok(v) = HeaderValue::from_str(&clear_cookie) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        LogoutOutcome::Confirm { action, params } => super::pages::confirm_logout(&action, &params),
        LogoutOutcome::Page(p) => p.into_response(),
    }
}

async fn logout(
    State(op): State<OidcProvider>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    RawForm(form): RawForm,
) -> Response {
    let params = params(&method, uri.query().unwrap_or_default(), &form);
    let confirmed = method == Method::POST && params.get("confirm").is_some_and(|c| c == "yes");
    logout_answer(op.end_session(&params, &cookies(&headers), confirmed).await)
}

async fn logged_out(
    State(op): State<OidcProvider>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    logout_answer(op.logged_out(&query).await)
}

/// 200 when the sessions the logout token names ended (or none were live), 400 with an
/// error body when the token is refused (Back-Channel Logout 1.0 §2.8).
async fn backchannel_logout(
    State(op): State<OidcProvider>,
    Path(connection): Path<String>,
    RawForm(form): RawForm,
) -> Response {
    let form = params(&Method::POST, "", &form);
    match op.backchannel_logout(&connection, &form).await {
        Ok(_) => no_store(StatusCode::OK.into_response()),
        Err(e) => e.into_response(),
    }
}

/// Marks an answer that carries tokens, codes or claims as not cacheable.
fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn cookies(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

async fn callback(
    State(op): State<OidcProvider>,
    Path(connection): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match op.callback(&connection, &query, &cookies(&headers)).await {
        CallbackOutcome::ToClient {
            location,
            clear_cookie,
            session_cookie,
        } => {
            let mut set = vec![clear_cookie];
            set.extend(session_cookie);
            redirect_setting(&location, &set)
        }
        CallbackOutcome::Page(p) => p.into_response(),
    }
}

/// `Authorization: Basic` credentials: `client_id:client_secret`, each form-urlencoded
/// (RFC 6749 §2.3.1).
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let raw = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = raw.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

async fn token(
    State(op): State<OidcProvider>,
    headers: HeaderMap,
    RawForm(form): RawForm,
) -> Response {
    let form = params(&Method::POST, "", &form);
    match op.token(&form, &client_credentials(&headers, &form)).await {
        Ok(t) => {
            let mut resp = no_store(Json(t).into_response());
            resp.headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            resp
        }
        Err(e) => e.into_response(),
    }
}

fn client_credentials(headers: &HeaderMap, form: &BTreeMap<String, String>) -> ClientCredentials {
    ClientCredentials {
        basic: basic(headers),
        form_id: form.get("client_id").cloned(),
        form_secret: form.get("client_secret").cloned(),
    }
}

async fn revoke(
    State(op): State<OidcProvider>,
    headers: HeaderMap,
    RawForm(form): RawForm,
) -> Response {
    let form = params(&Method::POST, "", &form);
    match op.revoke(&form, &client_credentials(&headers, &form)).await {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => e.into_response(),
    }
}

async fn introspect(
    State(op): State<OidcProvider>,
    headers: HeaderMap,
    RawForm(form): RawForm,
) -> Response {
    let form = params(&Method::POST, "", &form);
    match op
        .introspect(&form, &client_credentials(&headers, &form))
        .await
    {
        Ok(doc) => no_store(Json(doc).into_response()),
        Err(e) => e.into_response(),
    }
}

async fn userinfo(State(op): State<OidcProvider>, headers: HeaderMap) -> Response {
    let bearer = crate::token::bearer(&headers);
    let bearer = bearer.as_ref().map(secrecy::ExposeSecret::expose_secret);
    match op.userinfo(bearer).await {
        Ok(doc) => no_store(Json(doc).into_response()),
        Err(e) => e.into_response(),
    }
}
