//! Reading and rewriting AMQP URLs (`amqp[s]://user:pass@host:port/vhost`): the vhost, the
//! user, and the same URL with other credentials (what a new terminal is told to use).
//!
//! A setting may name a cluster: a comma-separated list of node URLs (`AMQP_URL=amqp://…@n1/v,
//! amqp://…@n2/v`). Every node of one list must share the user and the vhost; the functions
//! here read them from the first node, and rewrite every node.

/// Percent-decodes `s`; `None` for a broken escape or bytes that are not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but unreserved characters.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The node URLs of a setting, in order: one for a single node, several for a cluster.
pub fn nodes(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect()
}

/// The first node's URL (where the user and the vhost are read).
fn first(list: &str) -> &str {
    nodes(list).first().copied().unwrap_or(list)
}

/// `(scheme, userinfo, host:port, path with query)` of a URL, or `None` for no scheme.
fn split(url: &str) -> Option<(&str, Option<&str>, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    Some((scheme, userinfo, host, path))
}

/// The vhost the URL names (its path, percent-decoded); `/` when there is none.
pub fn vhost(url: &str) -> Option<String> {
    let (_, _, _, path) = split(first(url))?;
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = path.strip_prefix('/').unwrap_or(path);
    if path.is_empty() {
        return Some("/".into());
    }
    percent_decode(path)
}

/// The user the URL logs in as (`guest`, RabbitMQ's default, when it names none).
pub fn user(url: &str) -> String {
    match split(first(url)).and_then(|(_, u, _, _)| u) {
        Some(userinfo) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            percent_decode(user).unwrap_or_else(|| user.to_owned())
        }
        None => "guest".into(),
    }
}

/// The URL with its password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    match split(url) {
        Some((scheme, Some(userinfo), host, path)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        Some((scheme, None, host, path)) => format!("{scheme}://{host}{path}"),
        None => "<not a URL>".into(),
    }
}

/// The same broker (every node of a list) and vhost, logged in as `user` with `password`.
pub fn with_credentials(url: &str, user: &str, password: &str) -> Option<String> {
    let rewritten = nodes(url)
        .into_iter()
        .map(|node| {
            let (scheme, _, host, path) = split(node)?;
            Some(format!(
                "{scheme}://{}:{}@{host}{path}",
                percent_encode(user),
                percent_encode(password)
            ))
        })
        .collect::<Option<Vec<String>>>()?;
    (!rewritten.is_empty()).then(|| rewritten.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_rewrites() {
        let u = "amqp://guest:guest@127.0.0.1:5672/%2f";
        assert_eq!(vhost(u).as_deref(), Some("/"));
        assert_eq!(user(u), "guest");
        assert_eq!(
            vhost("amqp://h:5672/cp_test_1?heartbeat=10").as_deref(),
            Some("cp_test_1")
        );
        assert_eq!(vhost("amqps://h").as_deref(), Some("/"));
        assert_eq!(user("amqp://h/v"), "guest");
        assert_eq!(user("amqp://svc%40x:pw@h/v"), "svc@x");
        assert_eq!(
            with_credentials(u, "pos.m1.t1@cp_x", "p/w").as_deref(),
            Some("amqp://pos.m1.t1%40cp_x:p%2Fw@127.0.0.1:5672/%2f")
        );
        assert_eq!(vhost("no scheme"), None);
        // A cluster: the first node names user and vhost; every node is rewritten.
        let cluster = "amqp://svc:pw@10.0.0.1:5701/v1, amqp://svc:pw@10.0.0.2:5702/v1,";
        assert_eq!(nodes(cluster).len(), 2);
        assert_eq!(user(cluster), "svc");
        assert_eq!(vhost(cluster).as_deref(), Some("v1"));
        assert_eq!(
            with_credentials(cluster, "pos.a.b", "x").as_deref(),
            Some("amqp://pos.a.b:x@10.0.0.1:5701/v1,amqp://pos.a.b:x@10.0.0.2:5702/v1")
        );
        assert_eq!(with_credentials(" , ", "u", "p"), None);
        assert_eq!(redact(u), "amqp://guest:***@127.0.0.1:5672/%2f");
        assert_eq!(redact("amqp://h:1/v"), "amqp://h:1/v");
        assert_eq!(redact("secret"), "<not a URL>");
        assert_eq!(percent_decode("%zz"), None);
    }
}
