//! A User or Group body (POST/PUT) through the normalisation every write uses
//! (`pimgate::scim::resource::user_from_body`, `group_from_body`).
//!
//! The bytes are the body when they are JSON, else a recipe for a generated body
//! (catalogue names in any case, typed and mistyped values, server-owned keys).
//!
//! Checked beyond "no panic":
//! - a refused body is a 4xx, and a 400 carries a `scimType`;
//! - normalisation is idempotent: a normalised document, sent again as a body, normalises
//!   to itself (this is what a client that PUTs back what it read relies on);
//! - the document reads back from its stored JSON unchanged (`Document::from_stored`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pimgate::directory::{GroupDoc, UserDoc};
use pimgate::scim::resource::{group_from_body, user_from_body};
use pimgate_fuzz::{assert_client_error, catalogue, generate, json_or_generated};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some(body) = json_or_generated(data, generate::resource_body) else {
        return;
    };
    let cat = catalogue();
    match user_from_body(body.clone(), cat) {
        Ok(doc) => {
            let again = user_from_body(Value::Object(doc.attrs().clone()), cat)
                .unwrap_or_else(|e| panic!("a normalised user does not normalise again: {e:?}\n{doc:?}"));
            assert_eq!(again, doc, "user normalisation is not idempotent");
            let stored = UserDoc::from_stored(&doc.to_json())
                .unwrap_or_else(|e| panic!("a user does not read back: {e:?}\n{doc:?}"));
            assert_eq!(stored, doc, "a user reads back changed");
        }
        Err(e) => assert_client_error(&e, "user_from_body"),
    }
    match group_from_body(body, cat) {
        Ok((doc, members)) => {
            if let Some(members) = &members {
                for m in members {
                    assert!(!m.value.trim().is_empty(), "a blank member id passed: {members:?}");
                }
            }
            let (again, none) = group_from_body(Value::Object(doc.attrs().clone()), cat)
                .unwrap_or_else(|e| panic!("a normalised group does not normalise again: {e:?}\n{doc:?}"));
            assert!(none.is_none(), "a group document carries members: {doc:?}");
            assert_eq!(again, doc, "group normalisation is not idempotent");
            let stored = GroupDoc::from_stored(&doc.to_json())
                .unwrap_or_else(|e| panic!("a group does not read back: {e:?}\n{doc:?}"));
            assert_eq!(stored, doc, "a group reads back changed");
        }
        Err(e) => assert_client_error(&e, "group_from_body"),
    }
});
