//! The build pipeline: from dockerTools arguments, resolved into a request, to an image in
//! a destination, as named stages, each done by the crate that owns its domain.
//!
//! A build runs these stages ([`Stage`]), telling its [`Events`] as it goes:
//!
//! 1. **read base** — the base image is read once into a private scratch folder and
//!    checked (`buildimage-archive`'s reader);
//! 2. **plan** — the copied folders are merged into a planned tree with rsync's
//!    semantics (`buildimage-layer`);
//! 3. **database** — `includeNixDB` writes a Nix database of the closure
//!    (`buildimage-nixdb`);
//! 4. **scripts** — `extraCommands` and `runAsRoot` run over a staged copy
//!    (`buildimage-sandbox`), and the tree is read back from it;
//! 5. **closure** — the store paths the image needs are found (`buildimage-nixdb`) and the
//!    layers composed: own entries, then the closure, less what the base already has;
//! 6. **write** — the image is assembled into a `buildimage_archive::Destination`, each
//!    layer planned, then streamed once.
//!
//! [`build_image`] runs them for `buildImage`. The front end (the `buildimage` binary)
//! reads the spec, resolves it into a [`BuildImage`], opens the destination, and reports.
//! Errors say which input they concern ([`Input`]), so the front end can name it in its
//! own words.
//!
//! ```no_run
//! use std::path::PathBuf;
//!
//! use buildimage_archive::{DockerArchive, Layout};
//! use buildimage_layer::Cancel;
//! use buildimage_pipeline::{BuildImage, Env, Silent, StoreSource, build_image};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let request = BuildImage {
//!     name: "hello".into(),
//!     tag: Some("latest".into()),
//!     from_image: None,
//!     copy_to_root: vec![PathBuf::from("/srv/hello-root")],
//!     keep_contents_dirlinks: false,
//!     config: None,
//!     inherit_config: false,
//!     architecture: buildimage_pipeline::host_architecture(),
//!     created: "1970-01-01T00:00:01Z".into(),
//!     extra_commands: String::new(),
//!     uid: 0,
//!     gid: 0,
//!     run_as_root: None,
//!     include_nix_db: false,
//!     store: StoreSource::default(),
//!     mtime: 315_532_800,
//! };
//! let cancel = Cancel::new();
//! let env = Env::new(&cancel, &Silent);
//! let mut archive = DockerArchive::new(std::fs::File::create("hello.tar")?, Layout::Legacy);
//! let built = build_image(&request, &env, &mut archive)?;
//! archive.into_inner()?;
//! println!("{}:{}", built.name, built.summary.tag);
//! # Ok(())
//! # }
//! ```
//!
//! # Determinism
//!
//! Every stage is a function of its inputs: the planned trees, closures and layers do not
//! depend on the order files were created in, their times, the umask, the time zone, the
//! locale or the number of cores (see the crates that do the work). The one input from
//! the environment is the time, and only when the request asks for it (`created = "now"`
//! is resolved by the front end).

mod base;
mod build;
mod compose;
mod database;
mod error;
mod events;
mod layered;
pub mod layering;
mod scripts;
mod store;
mod write;

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use buildimage_layer::Cancel;

pub use base::BaseRequest;
pub use build::{BuildImage, Built, build_image};
pub use error::{Error, Input, Result};
pub use events::{Events, Silent, Stage};
pub use layered::{BuildLayered, BuiltLayered, LayerReport, StoreOwner, build_layered};
pub use scripts::RootScript;
pub use store::StoreSource;

/// What every stage shares: the cancel flag, where events go, where scratch folders are
/// made, and the binary that runs the sandbox's helpers.
pub struct Env<'a> {
    /// Set when the build must stop (SIGINT, SIGTERM).
    pub cancel: &'a Cancel,
    /// Told the stages, warnings and layer progress.
    pub events: &'a dyn Events,
    /// The folder scratch folders are made in (`TMPDIR`).
    pub tmp: PathBuf,
    /// A binary whose `main` hands `__sandbox` to `buildimage_sandbox::sandbox_main`.
    pub self_exe: PathBuf,
    /// What `runAsRoot` and `fakeRootCommands` may use (time, disk).
    pub script_limits: buildimage_sandbox::Limits,
}

impl<'a> Env<'a> {
    /// Scratch folders in the system's temporary folder, the sandbox's helpers from the
    /// running binary.
    pub fn new(cancel: &'a Cancel, events: &'a dyn Events) -> Self {
        Env {
            cancel,
            events,
            tmp: std::env::temp_dir(),
            self_exe: PathBuf::from("/proc/self/exe"),
            script_limits: buildimage_sandbox::Limits::default(),
        }
    }
}

/// The automatic tag: 32 nix32 characters, like the hash part of the store path nixpkgs
/// would use, derived from the name and the image ID so that the same content always gets
/// the same tag and other content another.
pub fn auto_tag(name: &str, config_digest: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"buildimage auto tag\0");
    h.update(name.as_bytes());
    h.update(b"\0");
    h.update(config_digest.as_bytes());
    let folded = buildimage_nixdb::nix32::compress_hash(&h.finalize(), 20);
    buildimage_nixdb::nix32::encode(&folded)
}

/// The host's architecture in Go's naming, nixpkgs' default for `architecture`.
pub fn host_architecture() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        "mips" if cfg!(target_endian = "little") => "mipsle",
        "loongarch64" => "loong64",
        other => other,
    };
    arch.to_owned()
}
