//! What a build tells its caller while it runs: the stage it is in, warnings, and (through
//! [`Observer`]) the bytes of each layer, for progress displays and timing.

use buildimage_archive::Observer;

use crate::error::Input;

/// The named stages of a build, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the base image (`fromImage`).
    ReadBase,
    /// Planning the image's own files (`copyToRoot`, `contents`).
    Plan,
    /// Writing the Nix database (`includeNixDB`).
    Database,
    /// Running the scripts (`extraCommands`, `runAsRoot`, `fakeRootCommands`).
    Scripts,
    /// Finding the store closure and planning the layers.
    Closure,
    /// Writing the layers, the config and the manifest to the destination.
    Write,
}

impl Stage {
    /// A short description for progress lines: `read the base image`, …
    pub fn describe(self) -> &'static str {
        match self {
            Stage::ReadBase => "read the base image",
            Stage::Plan => "plan the image's files",
            Stage::Database => "write the Nix database",
            Stage::Scripts => "run the scripts",
            Stage::Closure => "find the store closure",
            Stage::Write => "write the image",
        }
    }
}

/// Receives a build's events. Every method has a default that does nothing.
pub trait Events: Observer {
    /// A stage begins (the previous one, if any, has ended).
    fn stage(&self, _stage: Stage) {}

    /// Something the user should know that does not stop the build, about `input` if
    /// given.
    fn warning(&self, _input: Option<Input>, _message: &str) {}
}

/// Events nobody listens to.
pub struct Silent;

impl Observer for Silent {}
impl Events for Silent {}
