//! A list filter (`GET /Users?filter=...`, `POST /.search`) from text to SQL.
//!
//! The bytes are the filter text when they are UTF-8, else a recipe for a generated filter.
//! The filter is parsed as the service parses it (`scim_v2`'s grammar, via the same
//! `ListParams::from_query` the routes use), then compiled with
//! `pimgate::directory::sql::compile_filter` for Users and Groups on SQLite and PostgreSQL.
//!
//! Checked beyond "no panic":
//! - a filter that does not parse is a 400 `invalidFilter`, and parses the same way both ways;
//! - a filter that does not compile is `DirectoryError::InvalidFilter` (a 400), never another
//!   kind of error, and both backends agree on whether (and why) it fails;
//! - compiled SQL has balanced quotes and parentheses, no `;`, and exactly one placeholder
//!   per bind (`?` / `$1..$n`), outside string literals; both backends bind the same count.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use pimgate::directory::sql::compile_filter;
use pimgate::directory::{Backend, DirectoryError, ResourceKind};
use pimgate::scim::error::{ScimError, ScimType};
use pimgate::scim::params::ListParams;
use pimgate_fuzz::{assert_client_error, catalogue, check_sql, generate};
use scim_v2::filter::Filter;

fuzz_target!(|data: &[u8]| {
    let text = match std::str::from_utf8(data) {
        Ok(s) => s.to_owned(),
        Err(_) => match generate::filter(&mut Unstructured::new(data), 4, true) {
            Ok(s) => s,
            Err(_) => return,
        },
    };
    run(&text);
});

fn run(text: &str) {
    let parsed = text.parse::<Filter>();
    // The route's own reading of `?filter=`.
    let via_query = ListParams::from_query(&[("filter".to_owned(), text.to_owned())]);
    let filter = match (parsed, via_query) {
        (Ok(f), Ok(params)) => {
            // An empty or blank filter reads as no filter at all on the route.
            if let Some(q) = &params.filter {
                assert_eq!(q, &f, "the route parses {text:?} differently");
            }
            f
        }
        (Err(_), Err(e)) => {
            assert_client_error(&e, "filter");
            assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{e:?}");
            return;
        }
        (Ok(f), Err(e)) => panic!("{text:?} parses as {f:?} but the route refuses it: {e:?}"),
        (Err(p), Ok(params)) => {
            assert!(
                params.filter.is_none(),
                "{text:?} does not parse ({p}) but the route accepts {:?}",
                params.filter
            );
            return;
        }
    };
    let cat = catalogue();
    for kind in [ResourceKind::User, ResourceKind::Group] {
        let sqlite = compile_filter(Backend::Sqlite, kind, cat, &filter);
        let postgres = compile_filter(Backend::Postgres, kind, cat, &filter);
        match (sqlite, postgres) {
            (Ok((s_sql, s_n)), Ok((p_sql, p_n))) => {
                if let Err(why) = check_sql(Backend::Sqlite, &s_sql, s_n) {
                    panic!("{kind} {text:?} on SQLite: {why}\n{s_sql}");
                }
                if let Err(why) = check_sql(Backend::Postgres, &p_sql, p_n) {
                    panic!("{kind} {text:?} on PostgreSQL: {why}\n{p_sql}");
                }
                assert_eq!(s_n, p_n, "{kind} {text:?}: the backends bind different counts");
            }
            (Err(s), Err(p)) => {
                assert_eq!(
                    s.to_string(),
                    p.to_string(),
                    "{kind} {text:?}: the backends refuse for different reasons"
                );
                for e in [s, p] {
                    assert!(
                        matches!(e, DirectoryError::InvalidFilter(_)),
                        "{kind} {text:?}: a filter must fail as InvalidFilter, got {e:?}"
                    );
                    let scim = ScimError::from(e);
                    assert_client_error(&scim, "compile_filter");
                }
            }
            (s, p) => panic!("{kind} {text:?}: SQLite gives {s:?}, PostgreSQL {p:?}"),
        }
    }
}
