//! What an unknown key was most likely meant to be.

use std::fmt;

/// Fields of the Docker image `config` object; seen at the top level, they are
/// most likely meant to go inside `config`.
const DOCKER_CONFIG_FIELDS: [&str; 16] = [
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
    "Healthcheck",
    "OnBuild",
    "Shell",
    "Memory",
    "MemorySwap",
    "CpuShares",
];

/// What an unknown key most likely was meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownKeyHint {
    /// A known key that is close by edit distance (case ignored).
    DidYouMean(&'static str),
    /// A field of the Docker image config, which belongs inside `config`.
    DockerConfigField,
    /// An argument of another dockerTools function.
    ArgumentOf {
        /// The functions that take it.
        function: &'static str,
        /// The function whose spec this is.
        not: &'static str,
    },
    /// Nothing close: the message lists the known keys.
    None(&'static [&'static str]),
}

impl fmt::Display for UnknownKeyHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DidYouMean(key) => write!(f, "; did you mean `{key}`?"),
            Self::DockerConfigField => {
                f.write_str("; it is a Docker image config field and belongs inside `config`")
            }
            Self::ArgumentOf { function, not } => {
                write!(f, "; it is an argument of {function}, not of {not}")
            }
            Self::None(known) => write!(f, "; the known keys are {}", known.join(", ")),
        }
    }
}

/// The keys of one kind of spec, for hints.
pub(crate) struct Keys {
    /// Every key the spec takes.
    pub known: &'static [&'static str],
    /// Arguments of the other dockerTools functions that this one does not take, with the
    /// functions that take them.
    pub foreign: &'static [(&'static str, &'static str)],
    /// The function whose spec this is.
    pub function: &'static str,
}

/// The hint for the unknown key `key` of a spec that takes `keys`.
pub(crate) fn hint_for(key: &str, keys: &Keys) -> UnknownKeyHint {
    if DOCKER_CONFIG_FIELDS
        .iter()
        .any(|field| field.eq_ignore_ascii_case(key))
    {
        return UnknownKeyHint::DockerConfigField;
    }
    if let Some((_, function)) = keys.foreign.iter().find(|(k, _)| *k == key) {
        return UnknownKeyHint::ArgumentOf {
            function,
            not: keys.function,
        };
    }
    // Optimal string alignment counts a swap of two neighbours as one edit, so the
    // common typo `nmae` is one edit away from `name`.
    let lower = key.to_lowercase();
    keys.known
        .iter()
        .map(|known| (strsim::osa_distance(&lower, &known.to_lowercase()), *known))
        .filter(|(distance, known)| *distance <= (known.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map_or(UnknownKeyHint::None(keys.known), |(_, known)| {
            UnknownKeyHint::DidYouMean(known)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: Keys = Keys {
        known: &["name", "fromImage", "tag"],
        foreign: &[("maxLayers", "buildLayeredImage")],
        function: "buildImage",
    };

    #[test]
    fn hints() {
        assert_eq!(strsim::osa_distance("nmae", "name"), 1);
        assert_eq!(strsim::osa_distance("ca", "abc"), 3);
        assert_eq!(hint_for("nmae", &KEYS), UnknownKeyHint::DidYouMean("name"));
        assert_eq!(hint_for("zzz", &KEYS), UnknownKeyHint::None(KEYS.known));
        assert_eq!(
            hint_for("fromimage", &KEYS),
            UnknownKeyHint::DidYouMean("fromImage")
        );
        assert_eq!(hint_for("cmd", &KEYS), UnknownKeyHint::DockerConfigField);
        assert_eq!(
            hint_for("maxLayers", &KEYS).to_string(),
            "; it is an argument of buildLayeredImage, not of buildImage"
        );
    }
}
