//! How the inputs of a build are named in errors and warnings: by the spec key or the
//! option that gave them.

use buildimage_pipeline::Input;

/// The names of a build's inputs.
pub struct InputNames {
    /// Whether the closure listing came from `--closure-info` rather than the spec.
    pub closure_info_flag: bool,
    /// What sending the image to its destination is called, for its errors: `Writing
    /// out.tar`, `Pushing to docker://…`, `Loading into the Docker engine`.
    pub destination: String,
}

impl InputNames {
    /// ``Key `fromImage` ``, `--closure-info`, `Writing out.tar failed`, …
    pub fn name(&self, input: Input) -> String {
        let key = match input {
            Input::FromImage => "fromImage",
            Input::MaxBaseSize => return "Key `fromImage` (--max-base-size)".to_owned(),
            Input::CopyToRoot => "copyToRoot",
            Input::Contents => "contents",
            Input::ClosureInfo if self.closure_info_flag => return "--closure-info".to_owned(),
            Input::ClosureInfo => "closureInfo",
            Input::IncludeNixDb => "includeNixDB",
            Input::ExtraCommands => "extraCommands",
            Input::RunAsRoot => "runAsRoot",
            Input::RunAsRootShell => "runAsRootShell",
            Input::FakeRootCommands => "fakeRootCommands",
            Input::MaxLayers => "maxLayers",
            Input::LayeringPipeline => "layeringPipeline",
            Input::Destination => return format!("{} failed", self.destination),
            _ => return "The build".to_owned(),
        };
        format!("Key `{key}`")
    }

    /// A pipeline error as the user sees it: the input's name, then the error and its
    /// causes.
    pub fn error(&self, error: buildimage_pipeline::Error) -> anyhow::Error {
        match error.input() {
            Some(input) => anyhow::Error::new(error).context(self.name(input)),
            None => anyhow::Error::new(error),
        }
    }
}
