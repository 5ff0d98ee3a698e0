//! The pages people see during sign-in: plain HTML, no JavaScript, no external assets.
//! Every failure page says what happened in words a person understands, what to do, and a
//! correlation id that is also in pimgate's log line for the failure.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Escapes text for HTML content and attribute values.
pub fn escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         h1{{font-size:1.4rem}} .id{{color:#666;font-size:.85rem}} li{{margin:.4rem 0}}</style>\
         </head><body>{body}</body></html>\n",
        t = escape(title),
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}

/// A sign-in failure, as the person sees it.
#[derive(Debug, Clone)]
pub struct FailurePage {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: String,
    /// Also in the log line of the failure.
    pub correlation_id: String,
}

impl IntoResponse for FailurePage {
    fn into_response(self) -> Response {
        let body = format!(
            "<h1>{}</h1><p>{}</p><p class=\"id\">If you contact your administrator, give them this reference: <code>{}</code></p>",
            escape(self.title),
            escape(&self.message),
            escape(&self.correlation_id),
        );
        page(self.status, self.title, &body)
    }
}

/// The page that lets a person choose where they sign in: one link per connection.
pub fn chooser(links: &[(String, String)]) -> Response {
    let items: String = links
        .iter()
        .map(|(label, href)| {
            format!(
                "<li><a href=\"{}\">{}</a></li>",
                escape(href),
                escape(label)
            )
        })
        .collect();
    page(
        StatusCode::OK,
        "Choose how to sign in",
        &format!(
            "<h1>Choose how to sign in</h1><p>Sign in with your organisation's account:</p><ul>{items}</ul>"
        ),
    )
}

/// The page after a logout that has nowhere else to go.
pub fn signed_out() -> Response {
    page(
        StatusCode::OK,
        "You are signed out",
        "<h1>You are signed out</h1><p>Your session has ended in every application you signed in to through your organisation. You can close this window.</p>",
    )
}

/// "Sign out?": a logout request without `id_token_hint`, confirmed by a POST from this page.
pub fn confirm_logout(action: &str, params: &[(String, String)]) -> Response {
    let hidden: String = params
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    page(
        StatusCode::OK,
        "Sign out?",
        &format!(
            "<h1>Sign out?</h1><p>You will be signed out of every application you signed in to through your organisation in this browser.</p>\
             <form method=\"post\" action=\"{}\">{hidden}<input type=\"hidden\" name=\"confirm\" value=\"yes\"><button type=\"submit\">Sign out</button></form>",
            escape(action)
        ),
    )
}
