//! Reading and rewriting AMQP URLs (`amqp[s]://user:pass@host:port/vhost`): the vhost, the
//! user, and the same URL with other credentials (what a new terminal is told to use).

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
    let (_, _, _, path) = split(url)?;
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = path.strip_prefix('/').unwrap_or(path);
    if path.is_empty() {
        return Some("/".into());
    }
    percent_decode(path)
}

/// The user the URL logs in as (`guest`, RabbitMQ's default, when it names none).
pub fn user(url: &str) -> String {
    match split(url).and_then(|(_, u, _, _)| u) {
        Some(userinfo) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            percent_decode(user).unwrap_or_else(|| user.to_owned())
        }
        None => "guest".into(),
    }
}

/// The same broker and vhost, logged in as `user` with `password`.
pub fn with_credentials(url: &str, user: &str, password: &str) -> Option<String> {
    let (scheme, _, host, path) = split(url)?;
    Some(format!(
        "{scheme}://{}:{}@{host}{path}",
        percent_encode(user),
        percent_encode(password)
    ))
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
        assert_eq!(percent_decode("%zz"), None);
    }
}
