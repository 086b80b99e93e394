//! Pushing an image to a registry through the OCI distribution API (v2).
//!
//! [`Registry`] is a [`BlobStore`]: [`buildimage_archive::BlobImage`] sends it each layer
//! as it is compressed, then the config, then the manifest. A blob the registry holds is
//! not sent again, and one seen in another repository of the same registry is mounted
//! from there. A blob up to [`CHUNK_SIZE`] is sent in one `PUT`; a larger one in chunks
//! of that size, so memory stays bounded whatever the layer's size.
//!
//! HTTP goes through [`ureq`] rather than reqwest: it is synchronous (the build is, and
//! needs no async runtime) and sends bounded in-memory bodies, which keeps every request
//! retryable after a transient failure. Every request stops within a fraction of a
//! second of [`RegistryOptions::cancel`] being set, whatever the registry does.
//!
//! ```no_run
//! use buildimage_remote::registry::{Registry, RegistryOptions, Target};
//!
//! let target = Target::parse("127.0.0.1:5000/app:latest").unwrap();
//! let options = RegistryOptions { tls_verify: false, ..RegistryOptions::default() };
//! let registry = Registry::connect(&target, &options)?;
//! # Ok::<(), buildimage_archive::Error>(())
//! ```

mod authfile;
mod challenge;
mod http;
mod reference;
mod tls;
mod transport;
mod upload;

use std::path::PathBuf;
use std::time::Duration;

use buildimage_archive::{Blob, BlobStore, BlobWriter, Error, Result};
use buildimage_layer::Cancel;
use ureq::Agent;
use ureq::http::Method;

pub use authfile::{AuthEnv, Credentials, find_credentials};
pub use challenge::{Challenge, parse_challenges};
pub use reference::{DOCKER_HUB, DOCKER_HUB_API, Target, check_repository, check_tag};

use http::{Call, Client, Reply};
use upload::Upload;

/// The size of the chunks a large blob is sent in, and the most of a blob held in
/// memory.
pub const CHUNK_SIZE: usize = 8 << 20;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the registry may stay silent, or not take any bytes, before the request is
/// given up (and retried). There is no overall limit: a large blob takes its time.
const IDLE_TIMEOUT: Duration = Duration::from_mins(5);

/// How to reach and log in to a registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// `USER:PASSWORD`; without it, the credentials come from the auth files.
    pub creds: Option<String>,
    /// The auth file to read instead of the default ones.
    pub authfile: Option<PathBuf>,
    /// Whether to require HTTPS with a valid certificate. When false, the certificate
    /// is not checked and a registry that does not speak TLS is reached over HTTP.
    pub tls_verify: bool,
    /// A folder of certificates: `*.crt` authorities (a server certificate that is one
    /// of them is trusted as itself, as skopeo does), `*.cert` and `*.key` a client
    /// certificate. Default `/etc/containers/certs.d/HOST[:PORT]` (or Docker's).
    pub cert_dir: Option<PathBuf>,
    /// Stops every request, and the waits between retries, within a fraction of a
    /// second of being set: the call fails with [`buildimage_layer::Interrupted`]. The
    /// default is never set.
    pub cancel: Cancel,
}

/// A repository of a registry, connected and logged in, to push blobs and a manifest to.
pub struct Registry {
    target: Target,
    client: Client,
    chunk_size: usize,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("target", &self.target)
            .field("origin", &self.client.origin())
            .finish_non_exhaustive()
    }
}

/// A [`Error::Destination`] with `message` and `source`.
pub(crate) fn destination(
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::Destination { message, source }
}

impl Registry {
    /// Connects to the registry of `target`: finds the credentials, pings `/v2/` (over
    /// plain HTTP too when `tls_verify` is off and HTTPS fails) and logs in, so that a
    /// wrong password or an unreachable registry is found before any work. Fails with
    /// [`buildimage_layer::Interrupted`] (here and in every later request) once
    /// `options.cancel` is set.
    pub fn connect(target: &Target, options: &RegistryOptions) -> Result<Registry> {
        let credentials = match &options.creds {
            Some(creds) => Some(Credentials::parse(creds).map_err(|e| destination(e, None))?),
            None => find_credentials(
                &target.registry,
                &target.repository,
                options.authfile.as_deref(),
                &AuthEnv::from_process(),
            )?,
        };
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(format!("buildimage/{}", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(IDLE_TIMEOUT))
            .timeout_per_write(Some(IDLE_TIMEOUT));
        let agent = tls::agent(
            config,
            &target.registry,
            options.tls_verify,
            options.cert_dir.as_deref(),
            &options.cancel,
        )?;
        let mut client = Client::new(
            agent,
            &target.registry,
            &target.repository,
            credentials,
            options.cancel.clone(),
        );
        client.connect(target.api_host(), !options.tls_verify)?;
        Ok(Registry {
            target: target.clone(),
            client,
            chunk_size: CHUNK_SIZE,
        })
    }

    /// Sends blobs larger than `bytes` in chunks of `bytes` (default [`CHUNK_SIZE`]).
    #[must_use]
    pub fn with_chunk_size(mut self, bytes: usize) -> Registry {
        self.chunk_size = bytes.max(1);
        self
    }

    /// `…/v2/REPOSITORY/PATH` of the registry.
    fn url(&self, path: &str) -> String {
        format!(
            "{}/v2/{}/{path}",
            self.client.origin(),
            self.target.repository
        )
    }

    /// A request for the push scope.
    fn call<'a>(&self, method: Method, url: String, body: Option<&'a [u8]>) -> Call<'a> {
        Call {
            method,
            url,
            headers: Vec::new(),
            body,
            scopes: vec![self.client.push_scope()],
        }
    }

    /// `HEAD /v2/REPOSITORY/blobs/DIGEST`: whether the registry holds the blob with that
    /// size.
    fn blob_exists(&mut self, digest: &str, size: u64) -> Result<bool> {
        let what = format!("checking blob {digest}");
        let call = self.call(Method::HEAD, self.url(&format!("blobs/{digest}")), None);
        let reply = self.client.send(&call, &what)?;
        match reply.status.as_u16() {
            200 => Ok(reply
                .header("content-length")
                .and_then(|length| length.parse::<u64>().ok())
                .is_none_or(|length| length == size)),
            404 => Ok(false),
            _ => Err(self.client.status_error(&what, "HEAD", &reply, None)),
        }
    }

    /// The repositories of this registry among `seen_in` (`HOST/REPOSITORY`) that a blob
    /// may be mounted from.
    fn mount_sources(&self, seen_in: &[String]) -> Vec<String> {
        let prefix = format!("{}/", self.target.registry);
        let mut sources: Vec<String> = seen_in
            .iter()
            .filter_map(|location| location.strip_prefix(&prefix))
            .filter(|repository| {
                *repository != self.target.repository && check_repository(repository).is_ok()
            })
            .map(str::to_owned)
            .collect();
        sources.dedup();
        sources
    }

    /// `POST /v2/REPOSITORY/blobs/uploads/?mount=DIGEST&from=SOURCE`: whether the
    /// registry mounted the blob. A session it opened instead is deleted.
    fn mount(&mut self, digest: &str, source: &str) -> Result<bool> {
        let what = format!("mounting blob {digest} from {source}");
        let url = http::append_query(&self.url("blobs/uploads/"), "mount", digest);
        let url = http::append_query(&url, "from", source);
        let mut call = self.call(Method::POST, url, Some(&[]));
        call.scopes.push(format!("repository:{source}:pull"));
        let reply = self.client.send(&call, &what)?;
        match reply.status.as_u16() {
            201 => Ok(true),
            202 => {
                if let Some(location) = reply.header("location") {
                    let location = http::resolve_location(&call.url, location);
                    let delete = self.call(Method::DELETE, location, None);
                    self.client.send_quietly(&delete);
                }
                Ok(false)
            }
            _ => Err(self.client.status_error(&what, "POST", &reply, None)),
        }
    }

    /// `POST /v2/REPOSITORY/blobs/uploads/`: the location of a new upload session.
    fn start_session(&mut self, what: &str) -> Result<String> {
        let call = self.call(Method::POST, self.url("blobs/uploads/"), Some(&[]));
        let reply = self.client.send(&call, what)?;
        self.expect_location(&call, &reply, 202, what)
    }

    /// The `Location` of `reply` to `call`, which must have `status`.
    fn expect_location(
        &self,
        call: &Call<'_>,
        reply: &Reply,
        status: u16,
        what: &str,
    ) -> Result<String> {
        let method = call.method.as_str();
        if reply.status.as_u16() != status {
            return Err(self.client.status_error(what, method, reply, None));
        }
        let location = reply.header("location").ok_or_else(|| {
            self.client.fail(
                what,
                &format!("{method} answered {status} without a Location header"),
                None,
            )
        })?;
        Ok(http::resolve_location(&call.url, location))
    }
}

/// Checks that `digest` is `sha256:` and 64 lower-case hex digits.
fn check_digest(digest: &str) -> Result<()> {
    let valid = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if valid {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: format!("blob digest {digest}"),
            reason: "expected sha256: and 64 lower-case hex digits".to_owned(),
        })
    }
}

impl BlobStore for Registry {
    fn has_blob(&mut self, digest: &str, size: u64, seen_in: &[String]) -> Result<bool> {
        check_digest(digest)?;
        if self.blob_exists(digest, size)? {
            return Ok(true);
        }
        for source in self.mount_sources(seen_in) {
            // A mount only saves an upload: when it fails (the source repository is
            // gone, or not readable with these credentials), the blob is sent instead,
            // and a real problem with the registry shows there.
            if let Ok(true) = self.mount(digest, &source) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn start_blob(&mut self) -> Result<Box<dyn BlobWriter + '_>> {
        Ok(Box::new(Upload::new(self)))
    }

    fn put_manifest(&mut self, manifest: &Blob, bytes: &[u8], tag: &str) -> Result<()> {
        let tag = self.target.tag.clone().unwrap_or_else(|| tag.to_owned());
        let what = format!("pushing the manifest for tag {tag}");
        check_tag(&tag).map_err(|reason| self.client.fail(&what, &reason, None))?;
        let mut call = self.call(
            Method::PUT,
            self.url(&format!("manifests/{tag}")),
            Some(bytes),
        );
        call.headers
            .push(("content-type", manifest.media_type.clone()));
        let reply = self.client.send(&call, &what)?;
        if reply.status.as_u16() != 201 {
            return Err(self.client.status_error(&what, "PUT", &reply, None));
        }
        match reply.header("docker-content-digest") {
            Some(answered) if answered != manifest.digest => Err(self.client.fail(
                &what,
                &format!(
                    "the registry stored it as {answered}, not {}: it changed the manifest",
                    manifest.digest
                ),
                None,
            )),
            _ => Ok(()),
        }
    }

    fn location(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.target.registry, self.target.repository
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert!(check_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(check_digest(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(check_digest("sha256:abc").is_err());
        assert!(check_digest(&format!("sha512:{}", "a".repeat(64))).is_err());
    }
}
