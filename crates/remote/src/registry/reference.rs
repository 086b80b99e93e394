//! Where an image is pushed: `HOST[:PORT]/REPOSITORY[:TAG]`, as skopeo's `docker://`
//! transport names it, with Docker Hub's shorthand.

use std::fmt;

/// The registry host Docker Hub's references name.
pub const DOCKER_HUB: &str = "docker.io";

/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// The longest repository name the distribution specification allows.
const MAX_REPOSITORY_LEN: usize = 255;

/// The longest tag the distribution specification allows.
const MAX_TAG_LEN: usize = 128;

/// A repository in a registry, and the tag to push to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host[:port]` as given (`127.0.0.1:5000`), `docker.io` for Docker Hub.
    pub registry: String,
    /// The repository's path in the registry (`library/busybox`).
    pub repository: String,
    /// The tag to push, if the reference names one.
    pub tag: Option<String>,
}

impl Target {
    /// Parses what follows `docker://`: `HOST[:PORT]/REPOSITORY[:TAG]`. The first component
    /// is a host only if it holds a `.` or a `:` or is `localhost`; otherwise the
    /// reference is Docker Hub's (`busybox` is `docker.io/library/busybox`, `user/app`
    /// is `docker.io/user/app`). A digest (`@sha256:…`) is refused: a push names a tag.
    pub fn parse(rest: &str) -> Result<Target, String> {
        let invalid =
            |reason: String| format!("Invalid registry reference docker://{rest}: {reason}");
        if rest.is_empty() {
            return Err(invalid(
                "it is empty; expected HOST[:PORT]/REPOSITORY[:TAG]".to_owned(),
            ));
        }
        if let Some((_, digest)) = rest.split_once('@') {
            return Err(invalid(format!(
                "it names the digest {digest}; a push needs a tag (REPOSITORY:TAG) or none"
            )));
        }
        let (registry, remainder) = split_host(rest);
        check_host(registry).map_err(invalid)?;
        let (repository, tag) = match remainder.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
            _ => (remainder, None),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_owned()
        };
        check_repository(&repository).map_err(invalid)?;
        if let Some(tag) = tag {
            check_tag(tag).map_err(invalid)?;
        }
        Ok(Target {
            registry: registry.to_owned(),
            repository,
            tag: tag.map(str::to_owned),
        })
    }

    /// The host (and port) that serves the registry's API: Docker Hub's is not
    /// `docker.io`.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        Ok(())
    }
}

/// Splits `rest` into the registry host and the rest, Docker Hub's when the first
/// component is not a host.
fn split_host(rest: &str) -> (&str, &str) {
    match rest.split_once('/') {
        Some((first, remainder))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, remainder)
        }
        _ => (DOCKER_HUB, rest),
    }
}

/// Checks `host[:port]`: DNS labels or an IPv4 address, or `[IPv6]`, then digits.
fn check_host(registry: &str) -> Result<(), String> {
    let (host, port) = if let Some(bracketed) = registry.strip_prefix('[') {
        let (address, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("registry host {registry} has no closing `]`"))?;
        if address.is_empty() || !address.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!("registry host {registry} is not an IPv6 address"));
        }
        match after {
            "" => return Ok(()),
            _ => (
                address,
                after.strip_prefix(':').ok_or_else(|| {
                    format!("registry host {registry}: expected `:PORT` after `]`")
                })?,
            ),
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, port),
            None => (registry, ""),
        }
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !registry.starts_with('[') && !host.split('.').all(label_ok) {
        return Err(format!(
            "registry host `{host}` is not a host name (letters, digits, `-` and `.`)"
        ));
    }
    if registry.contains(':') && !registry.ends_with(']') {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.chars().all(|c| c.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        if !valid {
            return Err(format!(
                "registry port `{port}` is not a port number (1 to 65535)"
            ));
        }
    }
    Ok(())
}

/// Checks a repository name against the distribution grammar: lower-case components
/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*` separated by `/`.
pub fn check_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() {
        return Err("the repository name is empty".to_owned());
    }
    if repository.len() > MAX_REPOSITORY_LEN {
        return Err(format!(
            "the repository name is {} characters long, more than {MAX_REPOSITORY_LEN}",
            repository.len()
        ));
    }
    for component in repository.split('/') {
        check_component(component).map_err(|reason| {
            format!("repository {repository}: component `{component}` {reason}")
        })?;
    }
    Ok(())
}

/// Checks one path component of a repository name; the error says what is wrong.
fn check_component(component: &str) -> Result<(), String> {
    if component.is_empty() {
        return Err("is empty (two `/` in a row, or one at an end)".to_owned());
    }
    if component.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("must be lower-case".to_owned());
    }
    if let Some(bad) = component
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "holds `{bad}`; only a-z, 0-9 and the separators `.`, `_`, `__`, `-` are allowed"
        ));
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !component.starts_with(alnum) || !component.ends_with(alnum) {
        return Err("must start and end with a letter or digit".to_owned());
    }
    // Between two runs of letters and digits: `.`, `_`, `__`, or any number of `-`.
    for separator in component.split(alnum).filter(|s| !s.is_empty()) {
        let valid = matches!(separator, "." | "_" | "__") || separator.chars().all(|c| c == '-');
        if !valid {
            return Err(format!(
                "has the separator `{separator}`; allowed are `.`, `_`, `__` or dashes"
            ));
        }
    }
    Ok(())
}

/// Checks a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("the tag after `:` is empty".to_owned());
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "tag {tag} is {} characters long, more than {MAX_TAG_LEN}",
            tag.len()
        ));
    }
    if tag.starts_with(['.', '-']) {
        return Err(format!("tag {tag} must not start with `.` or `-`"));
    }
    if let Some(bad) = tag
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "tag {tag} holds `{bad}`; only letters, digits, `_`, `.` and `-` are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(registry: &str, repository: &str, tag: Option<&str>) -> Target {
        Target {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
        }
    }

    #[test]
    fn host_port_repository_tag() {
        assert_eq!(
            Target::parse("127.0.0.1:5000/app:1.0").unwrap(),
            target("127.0.0.1:5000", "app", Some("1.0"))
        );
        assert_eq!(
            Target::parse("quay.io/org/sub/app").unwrap(),
            target("quay.io", "org/sub/app", None)
        );
        assert_eq!(
            Target::parse("localhost/app:latest").unwrap(),
            target("localhost", "app", Some("latest"))
        );
        assert_eq!(
            Target::parse("[::1]:5000/app").unwrap(),
            target("[::1]:5000", "app", None)
        );
    }

    #[test]
    fn docker_hub_shorthand() {
        assert_eq!(
            Target::parse("busybox").unwrap(),
            target("docker.io", "library/busybox", None)
        );
        assert_eq!(
            Target::parse("user/app:v2").unwrap(),
            target("docker.io", "user/app", Some("v2"))
        );
        assert_eq!(
            Target::parse("docker.io/busybox:1").unwrap(),
            target("docker.io", "library/busybox", Some("1"))
        );
        assert_eq!(
            Target::parse("index.docker.io/user/app").unwrap(),
            target("docker.io", "user/app", None)
        );
        assert_eq!(Target::parse("busybox").unwrap().api_host(), DOCKER_HUB_API);
        assert_eq!(
            Target::parse("localhost:5000/a").unwrap().api_host(),
            "localhost:5000"
        );
    }

    #[test]
    fn separators() {
        for good in ["a.b", "a_b", "a__b", "a-b", "a---b", "a1/b2.c_d__e-f"] {
            assert!(check_repository(good).is_ok(), "{good}");
        }
        for bad in [
            "a..b", "a___b", "a._b", "-a", "a-", "_a", "a/", "/a", "a//b", "",
        ] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let error = Target::parse("127.0.0.1:5000/App").unwrap_err();
        assert!(error.contains("`App` must be lower-case"), "{error}");
        let error = Target::parse("127.0.0.1:5000/app@sha256:abcd").unwrap_err();
        assert!(error.contains("digest sha256:abcd"), "{error}");
        let error = Target::parse("127.0.0.1:5000/app:").unwrap_err();
        assert!(error.contains("tag after `:` is empty"), "{error}");
        let error = Target::parse("127.0.0.1:5000/app:-x").unwrap_err();
        assert!(error.contains("must not start"), "{error}");
        let error = Target::parse(&format!("h.io/a:{}", "x".repeat(129))).unwrap_err();
        assert!(error.contains("more than 128"), "{error}");
        let error = Target::parse("h.io:99999/a").unwrap_err();
        assert!(error.contains("port `99999`"), "{error}");
        let error = Target::parse("h_x.io/a").unwrap_err();
        assert!(error.contains("not a host name"), "{error}");
        let error = Target::parse("h.io/a b").unwrap_err();
        assert!(error.contains("holds ` `"), "{error}");
        let error = Target::parse("").unwrap_err();
        assert!(error.contains("empty"), "{error}");
        let error = Target::parse("h.io/a:t/x").unwrap_err();
        assert!(error.contains("holds `:`"), "{error}");
    }

    #[test]
    fn tags() {
        for good in ["latest", "_x", "1.0-rc.1", &"t".repeat(128)] {
            assert!(check_tag(good).is_ok(), "{good}");
        }
        for bad in ["", ".x", "-x", "a/b", "a+b", &"t".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
    }
}
