//! Image names and tags, checked against Docker's reference grammar
//! (`distribution/reference`), so that a bad reference fails the build rather than the
//! later `docker load`.
//!
//! The grammar is written out here rather than taken from a registry crate: those parse
//! references to pull them, so they normalise names (adding `docker.io/library/`), accept
//! digests, and do not say which component is wrong.
//!
//! ```
//! use buildimage_archive::reference::validate;
//!
//! assert!(validate("registry-1.docker.io/library/redis", "7.2").is_ok());
//! let err = validate("Redis", "latest").unwrap_err();
//! assert!(err.to_string().starts_with("Invalid image name \"Redis\""));
//! ```

/// Docker's `NameTotalLengthMax` (distribution/reference).
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Docker's tag grammar `[\w][\w.-]{0,127}` allows at most 128 characters.
const TAG_LENGTH_MAX: usize = 128;

/// A name or tag that Docker's reference grammar rejects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// An image name that Docker's reference grammar rejects.
    #[error("Invalid image name {name:?}: {reason}")]
    Name {
        /// The name checked.
        name: String,
        /// What is wrong and where.
        reason: String,
    },
    /// A tag that Docker's reference grammar rejects.
    #[error("Invalid tag {tag:?}: must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}, but {reason}")]
    Tag {
        /// The tag checked.
        tag: String,
        /// What is wrong and where.
        reason: String,
    },
}

/// Checks an image name and a tag.
///
/// Call it with the lower-cased name and the final tag. Names are
/// `[domain '/'] component ('/' component)*`, at most 255 bytes, where a component is runs
/// of `[a-z0-9]` joined by `.`, `_`, `__` or one or more `-`, and a domain is dot-separated
/// host labels with an optional `:port`. IPv6 registry addresses are rejected. Tags match
/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate(name: &str, tag: &str) -> Result<(), ReferenceError> {
    check_name(name).map_err(|reason| ReferenceError::Name {
        name: name.to_owned(),
        reason,
    })?;
    check_tag(tag).map_err(|reason| ReferenceError::Tag {
        tag: tag.to_owned(),
        reason,
    })
}

const COMPONENT_RULE: &str =
    "lower-case letters and digits, joined by '.', '_', '__' or one or more '-'";

pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_owned());
    }
    if name.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(format!(
            "it is {} bytes long, more than the limit of {NAME_TOTAL_LENGTH_MAX}",
            name.len()
        ));
    }
    let Some((first, rest)) = name.split_once('/') else {
        return check_remote(name);
    };
    // The grammar is `[domain '/'] remote`: valid if either reading is.
    let as_remote = check_remote(name);
    if as_remote.is_ok() {
        return Ok(());
    }
    let as_domain = check_domain(first).and_then(|()| check_remote(rest));
    if as_domain.is_ok() {
        return Ok(());
    }
    // Report the reading the user most likely meant, as Docker's own
    // splitDockerDomain guesses: a '.', a ':' or "localhost" marks a registry.
    let looks_like_domain = first.contains(['.', ':', '['])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase());
    if looks_like_domain {
        as_domain
    } else {
        as_remote
    }
}

fn check_remote(remote: &str) -> Result<(), String> {
    remote.split('/').try_for_each(check_component)
}

fn check_component(component: &str) -> Result<(), String> {
    let is_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if component.is_empty() {
        return Err(
            "it has an empty path component (a leading or trailing '/', or '//')".to_owned(),
        );
    }
    if let Some(c) = component
        .chars()
        .find(|&c| !is_alnum(c) && !matches!(c, '.' | '_' | '-'))
    {
        let kind = if c.is_uppercase() {
            "the upper-case letter "
        } else {
            ""
        };
        return Err(format!(
            "path component {component:?} contains {kind}{c:?}; components are {COMPONENT_RULE}"
        ));
    }
    if !component.starts_with(is_alnum) {
        return Err(format!(
            "path component {component:?} must start with a lower-case letter or a digit"
        ));
    }
    if !component.ends_with(is_alnum) {
        return Err(format!(
            "path component {component:?} must end with a lower-case letter or a digit"
        ));
    }
    for separator in component.split(is_alnum).filter(|run| !run.is_empty()) {
        let allowed = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !allowed {
            return Err(format!(
                "path component {component:?} has the separator {separator:?}; components are {COMPONENT_RULE}"
            ));
        }
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), String> {
    if domain.starts_with('[') {
        return Err(format!(
            "registry {domain:?}: IPv6 registry addresses are not supported"
        ));
    }
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    for label in host.split('.') {
        let is_label_char = |c: char| c.is_ascii_alphanumeric() || c == '-';
        if label.is_empty() {
            return Err(format!("registry host {host:?} has an empty label"));
        }
        if let Some(c) = label.chars().find(|&c| !is_label_char(c)) {
            return Err(format!(
                "registry host {host:?} contains {c:?}; host labels are letters, digits and '-'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "registry host {host:?} has the label {label:?}, which starts or ends with '-'"
            ));
        }
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("registry port {port:?} must be decimal digits"));
    }
    Ok(())
}

pub(crate) fn check_tag(tag: &str) -> Result<(), String> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let Some(first) = tag.chars().next() else {
        return Err("it is empty".to_owned());
    };
    if !is_word(first) {
        return Err(format!("it starts with {first:?}"));
    }
    if let Some(c) = tag.chars().find(|&c| !is_word(c) && c != '.' && c != '-') {
        return Err(format!("it contains {c:?}"));
    }
    if tag.len() > TAG_LENGTH_MAX {
        return Err(format!("it is {} characters long", tag.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_reference(name: &str, tag: &str) -> Result<(), ReferenceError> {
        validate(name, tag)
    }

    #[test]
    fn reference_positives() {
        for name in [
            "a",
            "hello",
            "registry-1.docker.io/image",
            "localhost:5000/a/b",
            "localhost/a",
            "example.com:443/team/app",
            "Example.COM/app",
            "a__b",
            "a--b",
            "a---b",
            "a.b_c-d",
            "0/1",
            "nixos/nix",
            "ontopofpulledimage",
            "exa_mple.com/foo",
        ] {
            validate_reference(name, "latest").unwrap_or_else(|err| panic!("{name}: {err}"));
        }
        let longest = "a".repeat(255);
        validate_reference(&longest, "latest").unwrap();
        for tag in [
            "latest",
            "_",
            "v1.0-rc_1",
            "0",
            "ABC",
            &"t".repeat(128),
            "x0000000000000000000000000000000",
        ] {
            validate_reference("a", tag).unwrap_or_else(|err| panic!("{tag}: {err}"));
        }
    }

    #[test]
    fn reference_negative_names() {
        let name_err = |name: &str| validate_reference(name, "latest").unwrap_err().to_string();
        let rule = COMPONENT_RULE;
        assert_eq!(name_err(""), "Invalid image name \"\": it is empty");
        assert_eq!(
            name_err("-a"),
            "Invalid image name \"-a\": path component \"-a\" must start with a lower-case letter or a digit"
        );
        assert_eq!(
            name_err("a_"),
            "Invalid image name \"a_\": path component \"a_\" must end with a lower-case letter or a digit"
        );
        assert_eq!(
            name_err("A"),
            format!(
                "Invalid image name \"A\": path component \"A\" contains the upper-case letter 'A'; components are {rule}"
            )
        );
        assert_eq!(
            name_err("Foo bar"),
            format!(
                "Invalid image name \"Foo bar\": path component \"Foo bar\" contains the upper-case letter 'F'; components are {rule}"
            )
        );
        assert_eq!(
            name_err("foo bar"),
            format!(
                "Invalid image name \"foo bar\": path component \"foo bar\" contains ' '; components are {rule}"
            )
        );
        assert_eq!(
            name_err("a//b"),
            "Invalid image name \"a//b\": it has an empty path component (a leading or trailing '/', or '//')"
        );
        assert_eq!(
            name_err("a/"),
            "Invalid image name \"a/\": it has an empty path component (a leading or trailing '/', or '//')"
        );
        assert_eq!(
            name_err("a___b"),
            format!(
                "Invalid image name \"a___b\": path component \"a___b\" has the separator \"___\"; components are {rule}"
            )
        );
        assert_eq!(
            name_err("a.-b"),
            format!(
                "Invalid image name \"a.-b\": path component \"a.-b\" has the separator \".-\"; components are {rule}"
            )
        );
        assert_eq!(
            name_err("a..b"),
            format!(
                "Invalid image name \"a..b\": path component \"a..b\" has the separator \"..\"; components are {rule}"
            )
        );
        let long = "a".repeat(256);
        assert_eq!(
            name_err(&long),
            format!(
                "Invalid image name \"{long}\": it is 256 bytes long, more than the limit of 255"
            )
        );
    }

    #[test]
    fn reference_negative_registries() {
        let name_err = |name: &str| validate_reference(name, "latest").unwrap_err().to_string();
        let rule = COMPONENT_RULE;
        // A registry needs a path after it.
        assert_eq!(
            name_err("localhost:5000"),
            format!(
                "Invalid image name \"localhost:5000\": path component \"localhost:5000\" contains ':'; components are {rule}"
            )
        );
        assert_eq!(
            name_err("localhost:50a/x"),
            "Invalid image name \"localhost:50a/x\": registry port \"50a\" must be decimal digits"
        );
        assert_eq!(
            name_err("-bad.example.com/x"),
            "Invalid image name \"-bad.example.com/x\": registry host \"-bad.example.com\" has the label \"-bad\", which starts or ends with '-'"
        );
        assert_eq!(
            name_err("bad..com/x"),
            "Invalid image name \"bad..com/x\": registry host \"bad..com\" has an empty label"
        );
        assert_eq!(
            name_err("[::1]:5000/x"),
            "Invalid image name \"[::1]:5000/x\": registry \"[::1]:5000\": IPv6 registry addresses are not supported"
        );
        // With a registry, the fault in the path is reported.
        assert_eq!(
            name_err("localhost:5000/Up"),
            format!(
                "Invalid image name \"localhost:5000/Up\": path component \"Up\" contains the upper-case letter 'U'; components are {rule}"
            )
        );
        // Without one, the name is read as a path.
        assert_eq!(
            name_err("team/Up"),
            format!(
                "Invalid image name \"team/Up\": path component \"Up\" contains the upper-case letter 'U'; components are {rule}"
            )
        );
    }

    #[test]
    fn reference_negative_tags() {
        let tag_err = |tag: &str| validate_reference("a", tag).unwrap_err().to_string();
        let prefix = "must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}, but";
        assert_eq!(
            tag_err(""),
            format!("Invalid tag \"\": {prefix} it is empty")
        );
        assert_eq!(
            tag_err(".a"),
            format!("Invalid tag \".a\": {prefix} it starts with '.'")
        );
        assert_eq!(
            tag_err("-a"),
            format!("Invalid tag \"-a\": {prefix} it starts with '-'")
        );
        assert_eq!(
            tag_err("a:b"),
            format!("Invalid tag \"a:b\": {prefix} it contains ':'")
        );
        assert_eq!(
            tag_err("a b"),
            format!("Invalid tag \"a b\": {prefix} it contains ' '")
        );
        let long = "t".repeat(129);
        assert_eq!(
            tag_err(&long),
            format!("Invalid tag \"{long}\": {prefix} it is 129 characters long")
        );
        // The name is checked first.
        assert!(
            validate_reference("A", "")
                .unwrap_err()
                .to_string()
                .starts_with("Invalid image name")
        );
    }
}
