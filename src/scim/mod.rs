//! SCIM 2.0 (RFC 7643, RFC 7644): the service provider identity providers push into.
//!
//! - [`routes`]: the HTTP surface under `/scim/{connection}/v2` (thin handlers);
//! - [`extract`]: authentication, body, `If-Match` and list parameters;
//! - [`service`]: operations on the directory (one store transaction each, events after commit);
//! - [`resource`], [`patch`], [`matching`]: pure normalisation, PATCH and value-filter logic;
//! - [`render`]: representations and attribute selection; [`discovery`]: RFC 7644 §4;
//! - [`schema`]: the attribute catalogue; [`error`]: RFC 7644 §3.12 errors.
pub mod discovery;
pub mod error;
pub mod extract;
pub mod matching;
pub mod patch;
pub mod render;
pub mod resource;
pub mod routes;
pub mod schema;
pub mod service;
