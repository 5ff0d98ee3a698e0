//! Service provider discovery (RFC 7644 §4): `/ServiceProviderConfig`, `/ResourceTypes` and
//! `/Schemas`, built with `scim_v2`'s typed models. What they advertise is what the server
//! does: PATCH, filter (with the page cap as `maxResults`), sort and ETags are supported;
//! bulk and password change are not. The documents are contract snapshots
//! (`tests/pimgate/snapshots/`).

use scim_v2::models::resource_types::{ResourceType, SchemaExtension};
use scim_v2::models::scim_schema::Meta;
use scim_v2::models::service_provider_config::{
    AuthenticationScheme, Bulk, Filter, ServiceProviderConfig, Supported,
};
use serde_json::{Value, json};

use super::render::list_response;
use crate::directory::schema::{Catalogue, ENTERPRISE_URN, GROUP_URN, USER_URN};

fn meta(resource_type: &str, location: String) -> Option<Meta> {
    Some(Meta {
        resource_type: Some(resource_type.to_owned()),
        location: Some(location),
        ..Meta::default()
    })
}

fn to_json(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

pub fn service_provider_config(base: &str, max_results: i64) -> Value {
    let yes = Supported { supported: true };
    let no = Supported { supported: false };
    to_json(&ServiceProviderConfig {
        documentation_uri: Some(
            "https://github.com/struct-pim/pimgate/blob/main/README.md".to_owned(),
        ),
        patch: yes.clone(),
        bulk: Bulk {
            supported: false,
            max_operations: 0,
            max_payload_size: 0,
        },
        filter: Filter {
            supported: true,
            max_results,
        },
        change_password: no,
        sort: yes.clone(),
        etag: yes,
        authentication_schemes: vec![AuthenticationScheme {
            r#type: Some("oauthbearertoken".to_owned()),
            name: "OAuth Bearer Token".to_owned(),
            description: "A bearer token issued for this connection (pimgate token create)."
                .to_owned(),
            primary: Some(true),
            ..AuthenticationScheme::default()
        }],
        meta: meta(
            "ServiceProviderConfig",
            format!("{base}/ServiceProviderConfig"),
        ),
        ..ServiceProviderConfig::default()
    })
}

fn resource_type_of(base: &str, name: &str) -> Option<ResourceType> {
    let (description, schema, extensions) = match name {
        "User" => (
            "User Account",
            USER_URN,
            vec![SchemaExtension {
                schema: ENTERPRISE_URN.to_owned(),
                required: false,
            }],
        ),
        "Group" => ("Group", GROUP_URN, Vec::new()),
        _ => return None,
    };
    Some(ResourceType {
        id: Some(name.to_owned()),
        name: name.to_owned(),
        description: Some(description.to_owned()),
        endpoint: format!("/{name}s"),
        schema: schema.to_owned(),
        schema_extensions: if extensions.is_empty() {
            scim_v2::Asserted::absent()
        } else {
            extensions.into_iter().collect()
        },
        meta: meta("ResourceType", format!("{base}/ResourceTypes/{name}")),
        ..ResourceType::default()
    })
}

pub fn resource_types(base: &str) -> Value {
    let all: Vec<Value> = ["User", "Group"]
        .iter()
        .filter_map(|n| resource_type_of(base, n))
        .map(|t| to_json(&t))
        .collect();
    list_response(all.len() as i64, 1, all)
}

pub fn resource_type(base: &str, name: &str) -> Option<Value> {
    resource_type_of(base, name).map(|t| to_json(&t))
}

fn schema_json(cat: &Catalogue, base: &str, id: &str) -> Option<Value> {
    let schema = cat.published().iter().find(|s| s.id == id)?;
    let mut v = serde_json::to_value(schema).ok()?;
    // RFC 7643 §4.2's prose makes a group's displayName REQUIRED (its §8.7.1 definition says
    // otherwise); pimgate requires it, so it says so.
    if id == GROUP_URN
        && let Some(attrs) = v.get_mut("attributes").and_then(Value::as_array_mut)
    {
        for a in attrs.iter_mut().filter(|a| a["name"] == "displayName") {
            a["required"] = json!(true);
        }
    }
    v["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:Schema"]);
    v["meta"] = json!({"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")});
    Some(v)
}

pub fn schemas(cat: &Catalogue, base: &str) -> Value {
    let all: Vec<Value> = [USER_URN, ENTERPRISE_URN, GROUP_URN]
        .iter()
        .filter_map(|id| schema_json(cat, base, id))
        .collect();
    list_response(all.len() as i64, 1, all)
}

pub fn schema(cat: &Catalogue, base: &str, id: &str) -> Option<Value> {
    [USER_URN, ENTERPRISE_URN, GROUP_URN]
        .iter()
        .find(|u| u.eq_ignore_ascii_case(id))
        .and_then(|u| schema_json(cat, base, u))
}
