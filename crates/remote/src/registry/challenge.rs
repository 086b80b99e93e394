//! The `WWW-Authenticate` header (RFC 9110, section 11.6.1): one or more challenges, each
//! a scheme and either comma-separated `name=value` parameters (values tokens or quoted
//! strings with `\` escapes) or a `token68`.

use std::collections::BTreeMap;

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lower-cased (`basic`, `bearer`).
    pub scheme: String,
    /// The parameters, their names lower-cased; the first of a repeated name wins.
    pub params: BTreeMap<String, String>,
    /// The `token68` form's value, for a scheme given one instead of parameters.
    pub token68: Option<String>,
}

impl Challenge {
    /// The parameter `name` (lower-case), if given.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses a `WWW-Authenticate` header value into its challenges, in order. Never fails:
/// what cannot be parsed is skipped up to the next comma.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut parser = Parser {
        text: header,
        at: 0,
    };
    let mut challenges = Vec::new();
    loop {
        parser.skip_while(|c| c == ',' || is_space(c));
        if parser.at_end() {
            break;
        }
        let Some(scheme) = parser.token() else {
            parser.skip_while(|c| c != ',');
            continue;
        };
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            ..Challenge::default()
        };
        if parser.peek().is_some_and(is_space) {
            parser.skip_while(is_space);
            challenge.token68 = parser.token68();
            if challenge.token68.is_none() {
                parser.params(&mut challenge.params);
            }
        }
        challenges.push(challenge);
    }
    challenges
}

/// `tchar` of RFC 9110: the characters of a token.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Optional whitespace: space and horizontal tab.
fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// A cursor over the header.
struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn at_end(&self) -> bool {
        self.at >= self.text.len()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c| !keep(c)).unwrap_or(rest.len());
        self.at += len;
        &rest[..len]
    }

    fn token(&mut self) -> Option<&'a str> {
        Some(self.skip_while(is_tchar)).filter(|t| !t.is_empty())
    }

    /// A `token68` (`1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`) that
    /// ends the challenge (is followed by a comma or the end); otherwise nothing is taken.
    fn token68(&mut self) -> Option<String> {
        let start = self.at;
        let body = self.skip_while(|c| c.is_ascii_alphanumeric() || "-._~+/".contains(c));
        let padding = self.skip_while(|c| c == '=');
        self.skip_while(is_space);
        if !body.is_empty() && (self.at_end() || self.peek() == Some(',')) {
            return Some(format!("{body}{padding}"));
        }
        self.at = start;
        None
    }

    /// `#auth-param`, up to the start of the next challenge (a token not followed by `=`).
    fn params(&mut self, params: &mut BTreeMap<String, String>) {
        loop {
            let before = self.at;
            self.skip_while(|c| c == ',' || is_space(c));
            let start = self.at;
            let Some(name) = self.token() else {
                if !self.at_end() {
                    // Junk: skip to the next comma and go on with what follows.
                    self.skip_while(|c| c != ',');
                    if self.at > before {
                        continue;
                    }
                }
                return;
            };
            self.skip_while(is_space);
            if self.peek() != Some('=') {
                // The scheme of the next challenge.
                self.at = start;
                return;
            }
            self.at += 1;
            self.skip_while(is_space);
            let value = if self.peek() == Some('"') {
                self.quoted()
            } else {
                self.token().unwrap_or_default().to_owned()
            };
            params.entry(name.to_ascii_lowercase()).or_insert(value);
        }
    }

    /// A quoted string, the cursor on its opening quote; an unterminated one runs to the
    /// end of the header.
    fn quoted(&mut self) -> String {
        let mut value = String::new();
        let mut chars = self.rest().char_indices().skip(1);
        let mut end = self.text.len() - self.at;
        while let Some((index, c)) = chars.next() {
            match c {
                '"' => {
                    end = index + 1;
                    break;
                }
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                c => value.push(c),
            }
        }
        self.at += end;
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(scheme: &str, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: scheme.to_owned(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            token68: None,
        }
    }

    #[test]
    fn docker_hub_bearer() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#;
        assert_eq!(
            parse_challenges(header),
            vec![challenge(
                "bearer",
                &[
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io"),
                    ("scope", "repository:library/busybox:pull,push"),
                ]
            )]
        );
    }

    #[test]
    fn basic_with_unquoted_and_spaced_params() {
        assert_eq!(
            parse_challenges("Basic realm=Registry , charset = \"UTF-8\""),
            vec![challenge(
                "basic",
                &[("realm", "Registry"), ("charset", "UTF-8")]
            )]
        );
    }

    #[test]
    fn several_challenges() {
        let header =
            r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#;
        assert_eq!(
            parse_challenges(header),
            vec![
                challenge(
                    "newauth",
                    &[
                        ("realm", "apps"),
                        ("type", "1"),
                        ("title", "Login to \"apps\"")
                    ]
                ),
                challenge("basic", &[("realm", "simple")]),
            ]
        );
    }

    #[test]
    fn bare_schemes_and_token68() {
        let parsed = parse_challenges("Negotiate, NTLM abc+/==, Bearer");
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0], challenge("negotiate", &[]));
        assert_eq!(parsed[1].scheme, "ntlm");
        assert_eq!(parsed[1].token68.as_deref(), Some("abc+/=="));
        assert_eq!(parsed[2], challenge("bearer", &[]));
    }

    #[test]
    fn case_duplicates_and_escapes() {
        let parsed = parse_challenges(r#"BEARER Realm="a\\b\"c", realm="second", Scope="x,y""#);
        assert_eq!(
            parsed,
            vec![challenge(
                "bearer",
                &[("realm", "a\\b\"c"), ("scope", "x,y")]
            )]
        );
        assert_eq!(parsed[0].param("realm"), Some("a\\b\"c"));
    }

    #[test]
    fn hostile_input_does_not_panic() {
        for header in [
            "",
            ",,,",
            "\"",
            "Bearer realm=\"unterminated",
            "Bearer realm=\"x\\",
            "Bearer =,=,",
            "Bearer realm=é, Basic",
            "é Basic realm=x",
            "Bearer realm",
            "Basic realm=\"a\"junk, Bearer realm=b",
        ] {
            let _ = parse_challenges(header);
        }
        assert_eq!(
            parse_challenges("Bearer realm=\"unterminated"),
            vec![challenge("bearer", &[("realm", "unterminated")])]
        );
        assert!(parse_challenges("é Basic realm=x").is_empty());
        let parsed = parse_challenges("é, Basic realm=x");
        assert_eq!(parsed.last().unwrap().scheme, "basic");
    }
}
