//! Service provider discovery (RFC 7644 §4): `/ServiceProviderConfig`, `/ResourceTypes` and
//! `/Schemas`. What they advertise is what the server does: PATCH, filter (with the page cap
//! as `maxResults`), sort and ETags are supported; bulk and password change are not.

use serde_json::{Value, json};

use super::render::list_response;
use super::schema::{Catalogue, ENTERPRISE_URN, GROUP_URN, USER_URN};

pub fn service_provider_config(base: &str, max_results: i64) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/struct-pim/pimgate/blob/main/README.md",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "A bearer token issued for this connection (pimgate token create).",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}

fn user_type(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "User Account",
        "schema": USER_URN,
        "schemaExtensions": [{"schema": ENTERPRISE_URN, "required": false}],
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
    })
}

fn group_type(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "Group",
        "schema": GROUP_URN,
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")},
    })
}

pub fn resource_types(base: &str) -> Value {
    list_response(2, 1, vec![user_type(base), group_type(base)])
}

pub fn resource_type(base: &str, name: &str) -> Option<Value> {
    match name {
        "User" => Some(user_type(base)),
        "Group" => Some(group_type(base)),
        _ => None,
    }
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
