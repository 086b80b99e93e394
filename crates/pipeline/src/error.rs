//! The error type of the pipeline: what went wrong, and which input of the request it
//! concerns, so that a front end can name it in its own words (a spec key, a flag).

use std::fmt;

/// An input of a build request that an error can be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// The base image (`fromImage`).
    FromImage,
    /// The limit on the bytes the base image expands to, when the base goes over it.
    MaxBaseSize,
    /// A folder copied into the image (`copyToRoot`, `buildImage`'s `contents`).
    CopyToRoot,
    /// A store path linked into a layered image (`contents`).
    Contents,
    /// The closure listing given with the store (`closureInfo`).
    ClosureInfo,
    /// The Nix database put into the image (`includeNixDB`).
    IncludeNixDb,
    /// The script run as the invoking user (`extraCommands`).
    ExtraCommands,
    /// The script run as root (`runAsRoot`).
    RunAsRoot,
    /// The shell of the root script (`runAsRootShell`).
    RunAsRootShell,
    /// The script run as root in the customisation layer (`fakeRootCommands`).
    FakeRootCommands,
    /// The layer budget (`maxLayers`).
    MaxLayers,
    /// The layering steps (`layeringPipeline`).
    LayeringPipeline,
    /// The destination the image is written to (not an input, but named the same way).
    Destination,
}

/// What can go wrong in a build: an error of a stage, with the input it concerns.
///
/// Displayed, it is the stage's own message (for example `Cannot open /x.tar`); the
/// caller puts the input's name in front and the causes after it.
#[derive(Debug)]
pub struct Error {
    input: Option<Input>,
    context: Option<String>,
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl Error {
    /// An error of `source` with nothing to add.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Error {
            input: None,
            context: None,
            source: source.into(),
        }
    }

    /// An error with only a message.
    pub fn message(message: impl Into<String>) -> Self {
        Error::new(Message(message.into()))
    }

    /// Says which input the error is about.
    #[must_use]
    pub fn about(mut self, input: Input) -> Self {
        self.input = Some(input);
        self
    }

    /// Says what was being done; the cause stays behind it.
    #[must_use]
    pub fn context(self, context: impl Into<String>) -> Self {
        let context = Some(context.into());
        if self.context.is_none() {
            return Error { context, ..self };
        }
        Error {
            input: self.input,
            context,
            source: Box::new(Error {
                input: None,
                ..self
            }),
        }
    }

    /// The input the error is about, if any.
    pub fn input(&self) -> Option<Input> {
        self.input
    }

    /// Whether the build stopped because it was asked to (SIGINT, SIGTERM).
    pub fn is_interrupted(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self.source.as_ref());
        while let Some(error) = cause {
            if error.is::<buildimage_layer::Interrupted>() {
                return true;
            }
            cause = error.source();
        }
        false
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.context {
            Some(context) => f.write_str(context),
            None => fmt::Display::fmt(&self.source, f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.context {
            Some(_) => Some(self.source.as_ref()),
            None => self.source.source(),
        }
    }
}

/// An error that is only a message.
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

macro_rules! from_crate_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(error: $t) -> Self {
                Error::new(error)
            }
        }
    )*};
}

from_crate_error!(
    buildimage_layer::Error,
    buildimage_layer::Interrupted,
    buildimage_archive::Error,
    buildimage_archive::reference::ReferenceError,
    buildimage_nixdb::Error,
    buildimage_sandbox::Error,
    std::io::Error
);

/// Adds an input and a context to errors of other crates.
pub(crate) trait ResultExt<T> {
    /// Marks the error as about `input`.
    fn about(self, input: Input) -> Result<T>;
    /// Puts `context` in front of the error.
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn about(self, input: Input) -> Result<T> {
        self.map_err(|e| e.into().about(input))
    }

    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.into().context(context()))
    }
}

/// The result type of the pipeline.
pub type Result<T, E = Error> = std::result::Result<T, E>;
