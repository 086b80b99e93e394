//! The error type of the archive crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while assembling or reading an image archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("Cannot {action} {}", path.display())]
    Io {
        /// What was being done: `open`, `read`, `create`, …
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Writing the archive stream failed.
    #[error("Writing the image failed")]
    Write(#[source] io::Error),
    /// Packing the layer failed.
    #[error(transparent)]
    Layer(#[from] buildimage_layer::Error),
    /// The layer stream did not have the size its plan promised.
    #[error("Layer {name} was planned as {planned} bytes but {written} were written")]
    LayerSize {
        /// Archive member name of the layer.
        name: String,
        /// Size from the plan.
        planned: u64,
        /// Size actually written.
        written: u64,
    },
    /// A destination (a registry, the Docker engine, a layout) refused or failed.
    #[error("{message}")]
    Destination {
        /// What went wrong, naming the destination and what was being sent.
        message: String,
        /// The cause, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The output cannot be written where it was asked to go.
    #[error("{0}")]
    Output(String),
    /// Something the caller asked for does not make sense.
    #[error("{what}: {reason}")]
    Invalid {
        /// What is at fault.
        what: String,
        /// Why.
        reason: String,
    },
    /// The base image archive or one of its layers could not be read: a broken tar header,
    /// a broken compressed stream, or an I/O error.
    #[error("Base image {what}: cannot read")]
    BaseRead {
        /// The archive file or the layer's member name.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The base image archive or one of its layers ends too early.
    #[error("Base image {what}: truncated")]
    BaseTruncated {
        /// The archive file or the layer's member name.
        what: String,
    },
    /// The base image exceeds a limit that protects against hostile archives.
    #[error("Base image {what}: more than {limit} {items}")]
    BaseLimit {
        /// The archive file, or the member that holds the list.
        what: String,
        /// The limit.
        limit: u64,
        /// What was counted (`members`, `layers`).
        items: &'static str,
    },
    /// Decompressing the base archive and its layers yields more bytes than the reader
    /// was allowed to write (`BaseImage::open_with`'s `max_expansion`).
    #[error("Base image {what}: expands to more than {limit} bytes ({})", human(*limit))]
    BaseTooLarge {
        /// The archive and member, or the layer, being read when the limit was reached.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A member that the archive's JSON names is not in the archive.
    #[error("Base image has no member {member}")]
    BaseMissing {
        /// The member name.
        member: String,
    },
    /// A JSON member of the base image is too large to be read.
    #[error("Base image {member}: larger than {limit} bytes")]
    BaseJsonSize {
        /// The member name.
        member: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A JSON member of the base image does not parse, or not into the expected form.
    #[error("Base image {member}: invalid JSON")]
    BaseJson {
        /// The member name.
        member: String,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
    /// The base image is malformed in some other way.
    #[error("Base image {what}: {reason}")]
    BaseInvalid {
        /// The archive file, member or layer concerned.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// No image of the base archive has the requested tag.
    #[error(
        "Base image has no image tagged {wanted}; tags found: {}",
        if found.is_empty() { "none".to_owned() } else { found.join(", ") }
    )]
    BaseNoMatch {
        /// `name:tag` as requested.
        wanted: String,
        /// Every `RepoTags` entry of the archive, in manifest order.
        found: Vec<String>,
    },
    /// A base layer's content does not have the `diff_id` its config lists.
    #[error(
        "Base image layer {layer}: diff_id mismatch: config says {expected}, content is {actual}"
    )]
    BaseDiffId {
        /// The layer's member name.
        layer: String,
        /// The `diff_id` in the config.
        expected: String,
        /// `sha256:<hex>` of the uncompressed layer.
        actual: String,
    },
    /// The base image config does not have the digest its member name states.
    #[error("Base image config {config}: content is sha256:{actual}")]
    BaseConfigDigest {
        /// The config's member name.
        config: String,
        /// Hex SHA-256 of the config's bytes.
        actual: String,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done and the path it concerns.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl From<buildimage_layer::Interrupted> for Error {
    fn from(interrupted: buildimage_layer::Interrupted) -> Self {
        Error::Layer(interrupted.into())
    }
}

/// The result type of the archive crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A byte count in the largest binary unit that divides it (`64 GiB`), else in whole MiB
/// (`about 3200 MiB`), for messages that also give the exact count.
fn human(bytes: u64) -> String {
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.trailing_zeros() >= shift {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("about {} MiB", bytes >> 20)
}
