//! HTTP exchanges with a registry: the scheme found by a ping, authentication (Basic, or
//! Bearer tokens per scope), retries of transient failures, and error messages that
//! name the registry, the repository, the request and the registry's own error.
//!
//! A set [`Cancel`] ends a request within a fraction of a second (its connection is a
//! [`super::transport::CancellableTcp`] one) and is never retried: the call fails with
//! [`Interrupted`] at once, without waiting out a backoff.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use buildimage_archive::{Error, Result};
use buildimage_layer::{Cancel, Interrupted};
use serde::Deserialize;
use ureq::Agent;
use ureq::http::{self, HeaderMap, Method, StatusCode};

use super::authfile::Credentials;
use super::challenge::{Challenge, parse_challenges};
use super::destination;
use super::transport::{SLICE, is_interrupted};

/// How many times a request is sent when it fails transiently.
const ATTEMPTS: u32 = 4;

/// The wait before the first retry; it doubles for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// The longest `Retry-After` honoured: a registry asking for more is not waited for
/// longer.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The most of a response body read: error bodies and tokens are small.
const MAX_BODY: u64 = 1 << 20;

/// A token is fetched again this long before the registry says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

/// A token's lifetime when the token server does not say (the token specification's
/// default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_mins(1);

/// A request to send: everything in memory, so it can be sent again.
pub(crate) struct Call<'a> {
    /// The HTTP method.
    pub method: Method,
    /// The absolute URL.
    pub url: String,
    /// Headers besides `Authorization`, `User-Agent` and `Content-Length`.
    pub headers: Vec<(&'static str, String)>,
    /// The body, for methods that have one.
    pub body: Option<&'a [u8]>,
    /// The token scopes the request needs (`repository:NAME:pull,push`).
    pub scopes: Vec<String>,
}

/// A registry's answer.
pub(crate) struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body (none for `HEAD`), at most [`MAX_BODY`] bytes of it.
    pub body: Vec<u8>,
}

impl Reply {
    /// The header `name` as text, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// How requests are authorized, learnt from the registry's challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Auth {
    /// No challenge (yet).
    Anonymous,
    /// HTTP Basic with the credentials.
    Basic,
    /// Tokens from `realm`.
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// A bearer token and when to stop using it.
struct Token {
    value: String,
    renew_at: Instant,
}

/// A registry's error body: `{"errors": [{"code", "message", "detail"}]}`.
#[derive(Deserialize)]
struct ErrorBody {
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A token server's answer.
#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// The connection to one repository of one registry.
pub(crate) struct Client {
    agent: Agent,
    /// `https://host[:port]` or `http://host[:port]`.
    origin: String,
    registry: String,
    repository: String,
    credentials: Option<Credentials>,
    auth: Auth,
    tokens: HashMap<String, Token>,
    /// Stops requests and the waits between them.
    cancel: Cancel,
}

impl Client {
    /// A client for `repository` of `registry`, not yet connected, whose requests stop
    /// when `cancel` is set (`agent`'s connections must watch it too).
    pub fn new(
        agent: Agent,
        registry: &str,
        repository: &str,
        credentials: Option<Credentials>,
        cancel: Cancel,
    ) -> Client {
        Client {
            agent,
            origin: String::new(),
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            credentials,
            auth: Auth::Anonymous,
            tokens: HashMap::new(),
            cancel,
        }
    }

    /// `scheme://host[:port]` of the registry's API.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether `url` is on the registry itself (scheme, host and port of its origin), the
    /// only place its credentials go.
    fn is_registry(&self, url: &str) -> bool {
        url.strip_prefix(self.origin.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
    }

    /// The scope a push to the repository needs.
    pub fn push_scope(&self) -> String {
        format!("repository:{}:pull,push", self.repository)
    }

    /// Pings `GET /v2/` on `api_host` over HTTPS, or when `insecure` also over plain
    /// HTTP if HTTPS fails; learns the scheme and the authentication challenge, then
    /// checks the credentials (or gets a token) so that a wrong password is found
    /// before any layer is compressed.
    pub fn connect(&mut self, api_host: &str, insecure: bool) -> Result<()> {
        let what = "connecting";
        self.origin = format!("https://{api_host}");
        let https = self.ping(if insecure { 1 } else { ATTEMPTS }, what);
        let reply = match https {
            Ok(reply) => reply,
            // An interrupted ping is no reason to try plain HTTP.
            Err(https_error) if insecure && !self.cancel.is_cancelled() => {
                self.origin = format!("http://{api_host}");
                self.ping(ATTEMPTS, what).map_err(|http_error| {
                    destination(
                        format!(
                            "{}; over plain HTTP: {}",
                            chain(&https_error),
                            chain(&http_error)
                        ),
                        None,
                    )
                })?
            }
            Err(error) => return Err(error),
        };
        match reply.status.as_u16() {
            200 => Ok(()),
            401 => {
                self.learn(&reply, "GET", what)?;
                self.check_credentials(what)
            }
            _ => Err(self.status_error(
                what,
                "GET",
                &reply,
                Some("not an OCI distribution (v2) registry?"),
            )),
        }
    }

    fn ping(&self, attempts: u32, what: &str) -> Result<Reply> {
        let call = Call {
            method: Method::GET,
            url: format!("{}/v2/", self.origin),
            headers: Vec::new(),
            body: None,
            scopes: Vec::new(),
        };
        self.send_retrying(&call, None, attempts, what)
    }

    /// After the ping's challenge: Basic credentials are tried on `/v2/`, a token for
    /// the push scope is fetched.
    fn check_credentials(&mut self, what: &str) -> Result<()> {
        let scopes = vec![self.push_scope()];
        let call = Call {
            method: Method::GET,
            url: format!("{}/v2/", self.origin),
            headers: Vec::new(),
            body: None,
            scopes,
        };
        let reply = self.send(&call, what)?;
        match reply.status.as_u16() {
            200 => Ok(()),
            _ => Err(self.status_error(what, "GET", &reply, None)),
        }
    }

    /// Sends `call` authorized as the registry asks, answering one `401` by
    /// authenticating anew (a first challenge, an expired token).
    pub fn send(&mut self, call: &Call<'_>, what: &str) -> Result<Reply> {
        let method = call.method.as_str();
        if !self.is_registry(&call.url) {
            // An upload location on another host (a storage service): the registry's
            // credentials are not for it, as Docker's client does not send them either.
            return self.send_retrying(call, None, ATTEMPTS, what);
        }
        let authorization = self.authorization(&call.scopes, what)?;
        let reply = self.send_retrying(call, authorization.as_deref(), ATTEMPTS, what)?;
        if reply.status != StatusCode::UNAUTHORIZED {
            return Ok(reply);
        }
        self.tokens.remove(&call.scopes.join(" "));
        self.learn(&reply, method, what)?;
        let Some(authorization) = self.authorization(&call.scopes, what)? else {
            return Err(self.unauthorized(what, method, &reply));
        };
        let reply = self.send_retrying(call, Some(&authorization), ATTEMPTS, what)?;
        if reply.status == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized(what, method, &reply));
        }
        Ok(reply)
    }

    /// Sends `call` once, authorized as known, ignoring any failure: for cleaning up.
    /// Nothing is sent once the flag is set: the request would stop at once anyway.
    pub fn send_quietly(&mut self, call: &Call<'_>) {
        if self.cancel.is_cancelled() {
            return;
        }
        if !self.is_registry(&call.url) {
            let _ = self.exchange(call, None);
            return;
        }
        if let Ok(authorization) = self.authorization(&call.scopes, "cleaning up") {
            let _ = self.exchange(call, authorization.as_deref());
        }
    }

    /// Learns how to authenticate from a `401`'s `WWW-Authenticate`.
    fn learn(&mut self, reply: &Reply, method: &str, what: &str) -> Result<()> {
        let challenges: Vec<Challenge> = reply
            .headers
            .get_all("www-authenticate")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        let bearer = challenges
            .iter()
            .find(|c| c.scheme == "bearer" && c.param("realm").is_some_and(|r| !r.is_empty()));
        if let Some(bearer) = bearer {
            self.auth = Auth::Bearer {
                realm: bearer.param("realm").unwrap_or_default().to_owned(),
                service: bearer.param("service").map(str::to_owned),
            };
        } else if challenges.iter().any(|c| c.scheme == "basic") {
            self.auth = Auth::Basic;
        } else {
            let offered = match challenges.first() {
                Some(challenge) => format!("the unsupported scheme {}", challenge.scheme),
                None => "no WWW-Authenticate challenge".to_owned(),
            };
            return Err(self.fail(
                what,
                &format!("{method} answered 401 Unauthorized with {offered}"),
                None,
            ));
        }
        Ok(())
    }

    /// The `Authorization` value for a request needing `scopes`, fetching a token if
    /// needed; `None` when anonymous.
    fn authorization(&mut self, scopes: &[String], what: &str) -> Result<Option<String>> {
        match &self.auth {
            Auth::Anonymous => Ok(None),
            Auth::Basic => Ok(self.credentials.as_ref().map(Credentials::basic)),
            Auth::Bearer { realm, service } => {
                let key = scopes.join(" ");
                if let Some(token) = self.tokens.get(&key)
                    && token.renew_at > Instant::now()
                {
                    return Ok(Some(format!("Bearer {}", token.value)));
                }
                let (realm, service) = (realm.clone(), service.clone());
                let token = self.fetch_token(&realm, service.as_deref(), scopes, what)?;
                let header = format!("Bearer {}", token.value);
                self.tokens.insert(key, token);
                Ok(Some(header))
            }
        }
    }

    /// Gets a token for `scopes` from `realm`, with the credentials if any.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        what: &str,
    ) -> Result<Token> {
        let mut url = realm.to_owned();
        if let Some(service) = service {
            url = append_query(&url, "service", service);
        }
        for scope in scopes {
            url = append_query(&url, "scope", scope);
        }
        if let Some(credentials) = &self.credentials {
            url = append_query(&url, "account", &credentials.username);
        }
        let call = Call {
            method: Method::GET,
            url,
            headers: Vec::new(),
            body: None,
            scopes: Vec::new(),
        };
        let what = format!("{what}: getting a token from {realm}");
        let basic = self.credentials.as_ref().map(Credentials::basic);
        let reply = self.send_retrying(&call, basic.as_deref(), ATTEMPTS, &what)?;
        match reply.status.as_u16() {
            200 => {}
            401 => return Err(self.unauthorized(&what, "GET", &reply)),
            _ => return Err(self.status_error(&what, "GET", &reply, None)),
        }
        let answer: TokenAnswer = serde_json::from_slice(&reply.body).map_err(|error| {
            self.fail(&what, "the answer is not a token", Some(Box::new(error)))
        })?;
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| self.fail(&what, "the answer holds no token", None))?;
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        Ok(Token {
            value,
            renew_at: Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        })
    }

    /// Sends `call` up to `attempts` times while it fails transiently (connection
    /// errors, 429, 500, 502, 503, 504), waiting longer each time; fails with
    /// [`Interrupted`] as soon as the flag is set.
    fn send_retrying(
        &self,
        call: &Call<'_>,
        authorization: Option<&str>,
        attempts: u32,
        what: &str,
    ) -> Result<Reply> {
        match retry(&self.cancel, attempts, || {
            self.exchange(call, authorization)
        }) {
            Ok(reply) => Ok(reply),
            Err(Failure::Interrupted) => Err(Interrupted.into()),
            Err(Failure::Failed { error, attempts }) => {
                let tries = if attempts > 1 {
                    format!(" (tried {attempts} times)")
                } else {
                    String::new()
                };
                let mut detail = format!("{} {} failed{tries}", call.method, redact(&call.url));
                if untrusted_certificate(&error) {
                    detail.push_str(
                        " (the registry's certificate is not trusted: is it, or the CA \
                         that issued it, a *.crt file of the certificate folder?)",
                    );
                }
                Err(self.fail(what, &detail, Some(Box::new(error))))
            }
        }
    }

    /// Sends `call` once.
    fn exchange(&self, call: &Call<'_>, authorization: Option<&str>) -> Result<Reply, ureq::Error> {
        let mut builder = http::Request::builder()
            .method(call.method.clone())
            .uri(&call.url);
        for (name, value) in &call.headers {
            builder = builder.header(*name, value);
        }
        if let Some(authorization) = authorization {
            builder = builder.header("authorization", authorization);
        }
        let response = match call.body {
            Some(body) => self.agent.run(builder.body(body)?)?,
            None => self.agent.run(builder.body(())?)?,
        };
        let (parts, body) = response.into_parts();
        let mut bytes = Vec::new();
        if call.method != Method::HEAD {
            body.into_reader()
                .take(MAX_BODY)
                .read_to_end(&mut bytes)
                .map_err(ureq::Error::Io)?;
        }
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: bytes,
        })
    }

    /// An error for `what`, naming the registry and the repository.
    pub fn fail(
        &self,
        what: &str,
        detail: &str,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        destination(
            format!(
                "Registry {}, repository {}: {what}: {detail}",
                self.registry, self.repository
            ),
            source,
        )
    }

    /// An error for an unexpected answer: the method, the status, the registry's error
    /// codes and messages, and a `hint` if any.
    pub fn status_error(
        &self,
        what: &str,
        method: &str,
        reply: &Reply,
        hint: Option<&str>,
    ) -> Error {
        let mut detail = format!("{method} answered {}", status_text(reply.status));
        if let Some(errors) = error_summary(&reply.body) {
            let _ = write!(detail, " ({errors})");
        }
        if let Some(hint) = hint {
            let _ = write!(detail, ": {hint}");
        }
        self.fail(what, &detail, None)
    }

    /// An error for a `401` that authenticating did not cure.
    fn unauthorized(&self, what: &str, method: &str, reply: &Reply) -> Error {
        let hint = if self.credentials.is_some() {
            "authentication failed (wrong user or password?)".to_owned()
        } else {
            format!(
                "authentication required: no credentials for {} (give USER:PASSWORD, or log \
                 in with `podman login` or `docker login`)",
                self.registry
            )
        };
        self.status_error(what, method, reply, Some(&hint))
    }
}

/// Why a request failed after its retries.
enum Failure {
    /// The flag was set.
    Interrupted,
    /// The last attempt's error, and how many attempts were made.
    Failed { error: ureq::Error, attempts: u32 },
}

/// Runs `exchange` up to `attempts` times while it fails transiently, waiting
/// [`FIRST_BACKOFF`], then twice as long each time (or as a `Retry-After` asks). Stops
/// when `cancel` is set: before an attempt, during a wait, or as the cause of a failure,
/// which is then not retried.
fn retry(
    cancel: &Cancel,
    attempts: u32,
    mut exchange: impl FnMut() -> Result<Reply, ureq::Error>,
) -> Result<Reply, Failure> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        if cancel.is_cancelled() {
            return Err(Failure::Interrupted);
        }
        let last = attempt >= attempts;
        let wait = match exchange() {
            Ok(reply) if !last && transient_status(reply.status) => {
                retry_after(&reply).unwrap_or(backoff)
            }
            Ok(reply) => return Ok(reply),
            // Once the flag is set, whatever broke the request (the agent shut down, the
            // connection cut) is the interruption's doing.
            Err(error) if is_interrupted(&error) || cancel.is_cancelled() => {
                return Err(Failure::Interrupted);
            }
            Err(error) if !last && transient_error(&error) => backoff,
            Err(error) => {
                return Err(Failure::Failed {
                    error,
                    attempts: attempt,
                });
            }
        };
        pause(cancel, wait).map_err(|Interrupted| Failure::Interrupted)?;
        attempt += 1;
        backoff *= 2;
    }
}

/// Sleeps for `wait` in slices of [`SLICE`], ending early with [`Interrupted`] when
/// `cancel` is set.
fn pause(cancel: &Cancel, wait: Duration) -> Result<(), Interrupted> {
    let end = Instant::now() + wait;
    loop {
        cancel.check()?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        thread::sleep(left.min(SLICE));
    }
}

/// `error` and its causes, joined by `: `.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let _ = write!(text, ": {inner}");
        cause = inner.source();
    }
    text
}

/// `400 Bad Request`: the code and its reason phrase.
fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// `CODE: message; CODE: message` from a registry's JSON error body, or the start of a
/// text body.
fn error_summary(body: &[u8]) -> Option<String> {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body)
        && !parsed.errors.is_empty()
    {
        let entries: Vec<String> = parsed
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect();
        return Some(entries.join("; "));
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() || text.starts_with('<') {
        return None;
    }
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    Some(short.replace(['\n', '\r'], " "))
}

/// Whether a status is worth sending the request again for.
fn transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// Whether a transport error is worth sending the request again for: the connection
/// failed, broke or timed out (and not because the flag was set).
fn transient_error(error: &ureq::Error) -> bool {
    let refused_certificate =
        matches!(tls_error(error), Some(rustls::Error::InvalidCertificate(_)));
    !refused_certificate
        && !is_interrupted(error)
        && matches!(
            error,
            ureq::Error::Io(_)
                | ureq::Error::Timeout(_)
                | ureq::Error::ConnectionFailed
                | ureq::Error::Protocol(_)
        )
}

/// The rustls error of a failed TLS handshake: ureq hands it over as is, or inside the
/// I/O error of the handshake.
fn tls_error(error: &ureq::Error) -> Option<&rustls::Error> {
    match error {
        ureq::Error::Rustls(error) => Some(error),
        ureq::Error::Io(error) => error.get_ref()?.downcast_ref(),
        _ => None,
    }
}

/// Whether the registry's certificate was refused for want of a trusted issuer:
/// webpki's `UnknownIssuer`, or its `CaUsedAsEndEntity` for a self-signed CA
/// certificate that is not in the certificate folder.
fn untrusted_certificate(error: &ureq::Error) -> bool {
    match tls_error(error) {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => true,
        // rustls passes webpki's own errors as text only.
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
            other.0.to_string() == "CaUsedAsEndEntity"
        }
        _ => false,
    }
}

/// The wait a `Retry-After: SECONDS` asks for, capped.
fn retry_after(reply: &Reply) -> Option<Duration> {
    let seconds: u64 = reply.header("retry-after")?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// `url` without its query, whose `_state` a registry may fill with noise.
fn redact(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}

/// `url` with `key=value` added to its query (`?` or `&`), both percent-encoded.
pub(crate) fn append_query(url: &str, key: &str, value: &str) -> String {
    let separator = if url.contains('?') {
        if url.ends_with('?') || url.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    format!("{url}{separator}{}={}", encode(key), encode(value))
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// Resolves a `Location` header against the request URL it answered: absolute URLs
/// stand, `//host/…` takes the scheme, `/path` the origin, `path` the request's folder.
pub(crate) fn resolve_location(request_url: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let (scheme, rest) = request_url
        .split_once("://")
        .unwrap_or(("https", request_url));
    if let Some(authority_path) = location.strip_prefix("//") {
        return format!("{scheme}://{authority_path}");
    }
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = redact(rest);
    let folder = path
        .rsplit_once('/')
        .map_or(authority, |(folder, _)| folder);
    format!("{scheme}://{folder}/{location}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let request = "https://r.io:5000/v2/app/blobs/uploads/";
        assert_eq!(
            resolve_location(request, "/v2/app/blobs/uploads/abc?_state=x"),
            "https://r.io:5000/v2/app/blobs/uploads/abc?_state=x"
        );
        assert_eq!(
            resolve_location(request, "http://other:1/up/1"),
            "http://other:1/up/1"
        );
        assert_eq!(
            resolve_location(request, "//cdn.io/up/1"),
            "https://cdn.io/up/1"
        );
        assert_eq!(
            resolve_location(request, "abc"),
            "https://r.io:5000/v2/app/blobs/uploads/abc"
        );
        assert_eq!(
            resolve_location("http://r.io/v2/x?q=a/b", "y"),
            "http://r.io/v2/y"
        );
        assert_eq!(resolve_location("http://r.io", "y"), "http://r.io/y");
    }

    #[test]
    fn queries() {
        assert_eq!(
            append_query("http://r/u/1", "digest", "sha256:ab"),
            "http://r/u/1?digest=sha256%3Aab"
        );
        assert_eq!(
            append_query("http://r/u/1?_state=a%2B", "digest", "sha256:ab"),
            "http://r/u/1?_state=a%2B&digest=sha256%3Aab"
        );
        assert_eq!(
            append_query("http://r/u?", "a", "b c/d"),
            "http://r/u?a=b%20c%2Fd"
        );
    }

    #[test]
    fn registry_errors() {
        let body = br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content","detail":{}}]}"#;
        assert_eq!(
            error_summary(body).unwrap(),
            "DIGEST_INVALID: provided digest did not match uploaded content"
        );
        assert_eq!(
            error_summary(b"  plain\ntext "),
            Some("plain text".to_owned())
        );
        assert_eq!(error_summary(b"<html>x</html>"), None);
        assert_eq!(error_summary(b""), None);
        assert_eq!(status_text(StatusCode::BAD_REQUEST), "400 Bad Request");
    }

    /// A reply with `status` and no body.
    fn reply(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: HeaderMap::new(),
            body: Vec::new(),
        }
    }

    #[test]
    fn interrupted_request_is_not_retried() {
        let cancel = Cancel::new();
        let mut calls = 0;
        let started = Instant::now();
        let result = retry(&cancel, ATTEMPTS, || {
            calls += 1;
            Err(super::super::transport::interrupted())
        });
        assert!(matches!(result, Err(Failure::Interrupted)));
        assert_eq!(calls, 1);
        assert!(started.elapsed() < FIRST_BACKOFF);
    }

    #[test]
    fn failure_once_cancelled_is_not_retried_nor_waited_for() {
        let cancel = Cancel::new();
        let mut calls = 0;
        let started = Instant::now();
        let result = retry(&cancel, ATTEMPTS, || {
            calls += 1;
            // As a connection cut by the agent's shutdown fails.
            cancel.cancel();
            Err(ureq::Error::Io(std::io::ErrorKind::ConnectionReset.into()))
        });
        assert!(matches!(result, Err(Failure::Interrupted)));
        assert_eq!(calls, 1);
        assert!(started.elapsed() < FIRST_BACKOFF);
    }

    #[test]
    fn transient_failures_are_retried_until_the_last_attempt() {
        let cancel = Cancel::new();
        let mut calls = 0;
        let result = retry(&cancel, 2, || {
            calls += 1;
            Err(ureq::Error::ConnectionFailed)
        });
        assert!(matches!(
            result,
            Err(Failure::Failed {
                error: ureq::Error::ConnectionFailed,
                attempts: 2
            })
        ));
        assert_eq!(calls, 2);
        let mut calls = 0;
        let result = retry(&cancel, 3, || {
            calls += 1;
            Ok(reply(if calls < 3 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            }))
        });
        assert!(matches!(result, Ok(reply) if reply.status == StatusCode::OK));
    }

    #[test]
    fn backoff_ends_when_cancelled() {
        let cancel = Cancel::new();
        let setter = cancel.clone();
        let started = Instant::now();
        let waker = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            setter.cancel();
        });
        let mut calls = 0;
        // Asked to wait 30 s before the second attempt.
        let result = retry(&cancel, ATTEMPTS, || {
            calls += 1;
            let mut busy = reply(StatusCode::TOO_MANY_REQUESTS);
            busy.headers.insert("retry-after", "30".parse().unwrap());
            Ok(busy)
        });
        waker.join().unwrap();
        assert!(matches!(result, Err(Failure::Interrupted)));
        assert_eq!(calls, 1);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn retry_after_is_capped() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "3".parse().unwrap());
        let reply = Reply {
            status: StatusCode::TOO_MANY_REQUESTS,
            headers,
            body: Vec::new(),
        };
        assert_eq!(retry_after(&reply), Some(Duration::from_secs(3)));
        let mut reply = reply;
        reply.headers.insert("retry-after", "9999".parse().unwrap());
        assert_eq!(retry_after(&reply), Some(MAX_RETRY_AFTER));
        reply.headers.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&reply), None);
    }
}
