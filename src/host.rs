//! `Host` header values. Without a configured public URL, the base of `Location` and
//! `meta.location` comes from the request's `Host`; only a syntactically plain host that is
//! also on the allow-list is ever used (`server.allowed_hosts`).

/// A `Host` header value: a DNS name, an IPv4 address or a bracketed IPv6 address, with an
/// optional port. Nothing else is ever taken from a `Host` header into a URL.
pub fn is_host(raw: &str) -> bool {
    let (host, port) = match raw.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (raw, None),
        Some((h, p)) => (h, Some(p)),
        None => (raw, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::is_host;

    #[test]
    fn hosts_are_names_or_addresses_with_an_optional_port() {
        for ok in [
            "localhost",
            "localhost:8080",
            "pimgate.example.com",
            "10.0.0.1:443",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_host(ok), "{ok}");
        }
        for bad in [
            "",
            "::1",
            "evil.com/x",
            "a b",
            "x:",
            "x:123456",
            "<script>",
            "h\"x",
            "[zz]",
            "host:80:80",
        ] {
            assert!(!is_host(bad), "{bad}");
        }
    }
}
