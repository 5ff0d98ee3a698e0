//! Redis URLs: one server (`redis://`, `rediss://` with TLS, `redis+unix://`, `unix://`),
//! the seed nodes of a Redis Cluster (`?cluster=true`, or several nodes listed), or the
//! Sentinels watching a master (`redis+sentinel://[user:password@]host:port[,host:port…]/
//! MASTER[/DB]`; the credentials and database are the master's).

use super::RedisConfigError;

/// What a Redis URL points at.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Target {
    Single(String),
    Cluster(Vec<String>),
    Sentinel(SentinelTarget),
}

/// Sentinels and the master they watch.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SentinelTarget {
    /// `redis://host:port` of each Sentinel.
    pub sentinels: Vec<String>,
    pub master: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
}

fn sentinel_target(after: &str) -> Result<Target, RedisConfigError> {
    let bad = |m: &str| RedisConfigError::InvalidUrl(m.to_owned());
    let (authority, path) = after
        .split_once('/')
        .ok_or_else(|| bad("redis+sentinel:// needs the master's name: …/MASTER[/DB]"))?;
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let sentinels: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("redis://{h}"))
        .collect();
    if sentinels.is_empty() {
        return Err(bad(
            "redis+sentinel:// needs at least one Sentinel host:port",
        ));
    }
    let mut parts = path.split('/');
    let master = parts.next().unwrap_or_default().to_owned();
    if master.is_empty() {
        return Err(bad(
            "redis+sentinel:// needs the master's name: …/MASTER[/DB]",
        ));
    }
    let db = match parts.next().filter(|d| !d.is_empty()) {
        Some(d) => d
            .parse()
            .map_err(|_| bad("the database after the master's name must be a number"))?,
        None => 0,
    };
    let decode = |v: &str| {
        url::form_urlencoded::parse(format!("x={v}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    let (username, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
        Some((u, p)) => (
            decode(u).filter(|u| !u.is_empty()),
            decode(p).filter(|p| !p.is_empty()),
        ),
        None => (None, None),
    };
    Ok(Target::Sentinel(SentinelTarget {
        sentinels,
        master,
        username,
        password,
        db,
    }))
}

/// Splits a configured URL into one server or cluster seed nodes (see
/// [`super::Redis::connect`] for the accepted forms). The `cluster` query parameter is
/// ours; other parameters and a `#fragment` apply to every node.
pub(super) fn parse_target(url: &str) -> Result<Target, RedisConfigError> {
    let url = url.trim();
    if let Some(after) = url.strip_prefix("redis+sentinel://") {
        return sentinel_target(after);
    }
    let (rest, fragment) = match url.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (url, None),
    };
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut cluster = false;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        if key == "cluster" {
            cluster = match value {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(RedisConfigError::InvalidUrl(
                        "the `cluster` parameter must be true or false".into(),
                    ));
                }
            };
        } else {
            kept.push(pair);
        }
    }
    let mut suffix = String::new();
    if !kept.is_empty() {
        suffix.push('?');
        suffix.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        suffix.push('#');
        suffix.push_str(f);
    }

    let mut nodes = Vec::new();
    for one in split_full_urls(base) {
        let Some((scheme, after)) = one.split_once("://") else {
            return Err(RedisConfigError::InvalidUrl(
                "expected redis://, rediss://, redis+unix:// or unix://".into(),
            ));
        };
        let (authority, path) = after.find('/').map_or((after, ""), |i| after.split_at(i));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        for host in hosts.split(',').map(str::trim) {
            let auth = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
            nodes.push(format!("{scheme}://{auth}{host}{path}{suffix}"));
        }
    }
    match nodes.len() {
        0 => Err(RedisConfigError::InvalidUrl("no Redis node given".into())),
        1 if !cluster => Ok(Target::Single(nodes.remove(0))),
        _ => Ok(Target::Cluster(nodes)),
    }
}

/// Splits `a://x,b://y` at the commas that start another full URL (a comma elsewhere, as in
/// a host list or a password, stays).
fn split_full_urls(base: &str) -> Vec<&str> {
    let bytes = base.as_bytes();
    let is_scheme_byte = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.');
    // (where the previous URL ends, where the next one starts)
    let mut cuts = Vec::new();
    let mut from = 0;
    while let Some(found) = base.get(from..).and_then(|s| s.find("://")) {
        let at = from + found;
        let mut start = at;
        while start > 0 && bytes.get(start - 1).is_some_and(is_scheme_byte) {
            start -= 1;
        }
        let mut comma = start;
        while comma > 0 && bytes.get(comma - 1).is_some_and(u8::is_ascii_whitespace) {
            comma -= 1;
        }
        if comma > 0 && bytes.get(comma - 1) == Some(&b',') {
            cuts.push((comma - 1, start));
        }
        from = at + 3;
    }
    let mut parts = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for (end, next) in cuts {
        parts.extend(base.get(start..end).map(str::trim));
        start = next;
    }
    parts.extend(base.get(start..).map(str::trim));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_one_server_or_cluster_nodes() {
        let single = |u: &str| Target::Single(u.to_owned());
        let cluster = |us: &[&str]| Target::Cluster(us.iter().map(|&u| u.to_owned()).collect());
        for (url, want) in [
            ("redis://h:6379", single("redis://h:6379")),
            ("rediss://u:p@h:6380/2", single("rediss://u:p@h:6380/2")),
            (
                "redis+unix:///run/r.sock?db=1",
                single("redis+unix:///run/r.sock?db=1"),
            ),
            ("unix:///run/r.sock", single("unix:///run/r.sock")),
            ("redis://:p,w@h:1", single("redis://:p,w@h:1")),
            (
                "redis://h:1?cluster=false&protocol=resp3",
                single("redis://h:1?protocol=resp3"),
            ),
            ("redis://h:1?cluster=true", cluster(&["redis://h:1"])),
            (
                "redis://:pw@h1:1,h2:2",
                cluster(&["redis://:pw@h1:1", "redis://:pw@h2:2"]),
            ),
            (
                "redis://h1:1, redis://:x@h2:2",
                cluster(&["redis://h1:1", "redis://:x@h2:2"]),
            ),
            (
                "rediss://h1:1,h2:2?protocol=resp3#x",
                cluster(&[
                    "rediss://h1:1?protocol=resp3#x",
                    "rediss://h2:2?protocol=resp3#x",
                ]),
            ),
        ] {
            assert_eq!(parse_target(url).unwrap(), want, "{url}");
        }
        assert_eq!(
            parse_target("redis+sentinel://:s%40cret@s1:26379,s2:26380/mymaster/2").unwrap(),
            Target::Sentinel(SentinelTarget {
                sentinels: vec!["redis://s1:26379".into(), "redis://s2:26380".into()],
                master: "mymaster".into(),
                username: None,
                password: Some("s@cret".into()),
                db: 2,
            })
        );
        assert!(
            parse_target("redis+sentinel://s1:26379").is_err(),
            "no master"
        );
        assert!(
            parse_target("redis+sentinel://s1:26379/m/x").is_err(),
            "bad db"
        );
    }
}
