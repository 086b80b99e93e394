//! `-o DEST`: where an image goes, in the transports skopeo and podman spell.
//!
//! | DEST | destination |
//! |---|---|
//! | `PATH`, `docker-archive:PATH`, `-` | a docker-archive file, or standard output |
//! | `oci:DIR[:REF]` | an OCI image layout folder |
//! | `oci-archive:PATH[:REF]` | an OCI image layout as one tar file |
//! | `docker://HOST[:PORT]/REPO[:TAG]` | a registry |
//! | `docker-daemon:` | the Docker engine at `DOCKER_HOST` |
//!
//! A DEST `WORD:REST` whose WORD (letters, digits, `-`) names no transport is an error,
//! so that a typo never becomes a file; `./foo:bar` names a file with a colon.

use std::path::{Path, PathBuf};

/// A parsed `-o DEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// A docker-archive file, or `-` for standard output.
    Archive(PathBuf),
    /// An OCI image layout folder, and the reference to name the image by.
    Oci {
        /// The layout's folder.
        dir: PathBuf,
        /// `org.opencontainers.image.ref.name`; the image's tag when `None`.
        reference: Option<String>,
    },
    /// An OCI image layout as one tar file.
    OciArchive {
        /// The archive file.
        path: PathBuf,
        /// `org.opencontainers.image.ref.name`; the image's tag when `None`.
        reference: Option<String>,
    },
    /// A registry: what follows `docker://`.
    Registry(String),
    /// The Docker engine.
    Daemon,
}

/// The transports `-o` knows, as written before the colon.
pub const TRANSPORTS: [&str; 5] = [
    "docker-archive",
    "oci",
    "oci-archive",
    "docker",
    "docker-daemon",
];

impl Dest {
    /// Parses `-o DEST`.
    pub fn parse(dest: &Path) -> Result<Dest, String> {
        let Some(text) = dest.to_str() else {
            return Ok(Dest::Archive(dest.to_owned()));
        };
        let Some((word, rest)) = text.split_once(':') else {
            return Ok(Dest::Archive(dest.to_owned()));
        };
        if word.is_empty() || !word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Ok(Dest::Archive(dest.to_owned()));
        }
        let need = |what: &str| format!("-o {text}: expected {word}:{what}");
        match word {
            "docker-archive" if rest.is_empty() => Err(need("PATH")),
            "docker-archive" => Ok(Dest::Archive(PathBuf::from(rest))),
            "oci" | "oci-archive" => {
                let (path, reference) = match rest.split_once(':') {
                    Some((path, reference)) => (path, Some(reference)),
                    None => (rest, None),
                };
                if path.is_empty() {
                    return Err(need(if word == "oci" {
                        "DIR[:REF]"
                    } else {
                        "PATH[:REF]"
                    }));
                }
                let reference = reference.map(check_reference).transpose()?;
                let path = PathBuf::from(path);
                Ok(if word == "oci" {
                    Dest::Oci {
                        dir: path,
                        reference,
                    }
                } else {
                    Dest::OciArchive { path, reference }
                })
            }
            "docker" => match rest.strip_prefix("//") {
                Some(target) if !target.is_empty() => Ok(Dest::Registry(target.to_owned())),
                _ => Err(need("//HOST[:PORT]/REPO[:TAG]")),
            },
            "docker-daemon" if rest.is_empty() => Ok(Dest::Daemon),
            "docker-daemon" => Err(format!(
                "-o {text}: docker-daemon: takes nothing after the colon (the image keeps its \
                 name and tag; set them in the spec)"
            )),
            _ => Err(format!(
                "-o {text}: unknown transport `{word}` (known: {}); to write a file whose name \
                 holds a colon, write ./{text}",
                TRANSPORTS.map(|t| format!("{t}:")).join(", ")
            )),
        }
    }

    /// How messages name the destination: `out.tar`, `oci:dir:ref`, `docker://…`.
    pub fn shown(&self) -> String {
        match self {
            Dest::Archive(path) => path.display().to_string(),
            Dest::Oci { dir, reference } => with_reference("oci", dir, reference.as_deref()),
            Dest::OciArchive { path, reference } => {
                with_reference("oci-archive", path, reference.as_deref())
            }
            Dest::Registry(target) => format!("docker://{target}"),
            Dest::Daemon => "docker-daemon:".to_owned(),
        }
    }

    /// Whether the image goes to standard output (`-`, `oci-archive:-`).
    pub fn is_stdout(&self) -> bool {
        match self {
            Dest::Archive(path) | Dest::OciArchive { path, .. } => path == Path::new("-"),
            _ => false,
        }
    }
}

fn with_reference(transport: &str, path: &Path, reference: Option<&str>) -> String {
    match reference {
        Some(r) => format!("{transport}:{}:{r}", path.display()),
        None => format!("{transport}:{}", path.display()),
    }
}

/// An OCI reference name: what `org.opencontainers.image.ref.name` may hold.
fn check_reference(reference: &str) -> Result<String, String> {
    let ok = !reference.is_empty()
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:@/+".contains(&b));
    if ok {
        Ok(reference.to_owned())
    } else {
        Err(format!(
            "reference {reference:?}: expected letters, digits and -._:@/+ (as \
             org.opencontainers.image.ref.name allows)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Dest, String> {
        Dest::parse(Path::new(s))
    }

    #[test]
    fn every_transport() {
        assert_eq!(parse("out.tar"), Ok(Dest::Archive("out.tar".into())));
        assert_eq!(parse("-"), Ok(Dest::Archive("-".into())));
        assert_eq!(parse("./a:b"), Ok(Dest::Archive("./a:b".into())));
        assert_eq!(parse("dir/a:b"), Ok(Dest::Archive("dir/a:b".into())));
        assert_eq!(
            parse("docker-archive:foo:bar"),
            Ok(Dest::Archive("foo:bar".into()))
        );
        assert_eq!(
            parse("oci:layout"),
            Ok(Dest::Oci {
                dir: "layout".into(),
                reference: None
            })
        );
        assert_eq!(
            parse("oci:/tmp/l:v1.2"),
            Ok(Dest::Oci {
                dir: "/tmp/l".into(),
                reference: Some("v1.2".into())
            })
        );
        assert_eq!(
            parse("oci-archive:img.tar:latest"),
            Ok(Dest::OciArchive {
                path: "img.tar".into(),
                reference: Some("latest".into())
            })
        );
        assert_eq!(
            parse("docker://127.0.0.1:5000/app:1"),
            Ok(Dest::Registry("127.0.0.1:5000/app:1".into()))
        );
        assert_eq!(parse("docker-daemon:"), Ok(Dest::Daemon));
    }

    #[test]
    fn mistakes_are_named() {
        let err = parse("oic:dir").unwrap_err();
        assert!(
            err.starts_with("-o oic:dir: unknown transport `oic` (known: docker-archive:, oci:"),
            "{err}"
        );
        assert!(err.ends_with("write ./oic:dir"), "{err}");
        assert_eq!(
            parse("docker:app").unwrap_err(),
            "-o docker:app: expected docker://HOST[:PORT]/REPO[:TAG]"
        );
        assert_eq!(
            parse("oci:").unwrap_err(),
            "-o oci:: expected oci:DIR[:REF]"
        );
        assert!(
            parse("oci:d:a b")
                .unwrap_err()
                .contains("reference \"a b\"")
        );
        assert!(
            parse("docker-daemon:x")
                .unwrap_err()
                .contains("takes nothing")
        );
    }
}
