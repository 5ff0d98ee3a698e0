//! SCIM 2.0 (RFC 7643, RFC 7644): the service provider identity providers push into. It
//! turns the protocol into directory operations and back; it owns no data of its own.
//!
//! - [`routes`]: the HTTP surface under `/scim/{connection}/v2` (thin handlers, generic over
//!   Users and Groups), for any application state that holds a [`ScimService`];
//! - [`extract`]: authentication, body, `If-Match`, query; [`params`]: list and search
//!   parameters;
//! - [`service`]: [`ScimService`] and the [`Resource`](service::Resource) path;
//! - [`resource`], [`patch`], [`matching`]: pure normalisation, PATCH and value-filter logic;
//! - [`render`]: representations and attribute selection; [`discovery`]: RFC 7644 §4;
//! - [`error`]: RFC 7644 §3.12 errors, and directory failures mapped to them once.
pub mod discovery;
pub mod error;
pub mod extract;
pub mod matching;
pub mod params;
pub mod patch;
pub mod render;
pub mod resource;
pub mod routes;
pub mod service;

pub use routes::router;
pub use service::{ScimOptions, ScimService};
