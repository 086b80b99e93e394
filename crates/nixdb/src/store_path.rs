//! Store paths: `/nix/store/<32 nix32 characters>-<name>`.

use std::borrow::Borrow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::nix32::IS_NIX32;

/// The store directory. Inside an image it is always `/nix/store`; a store rooted at `DIR`
/// (`nix --store DIR`) keeps the files of `/nix/store/x` at `DIR/nix/store/x`.
pub const STORE_DIR: &str = "/nix/store";

/// Length of the hash part of a store path, in nix32 characters.
pub const HASH_PART_LEN: usize = 32;

/// Longest store path name Nix accepts.
pub const MAX_NAME_LEN: usize = 211;

/// A syntactically valid store path, `/nix/store/<hash part>-<name>`.
///
/// Ordering, equality and hashing are those of the full path string, byte-wise; that is also
/// the order of the base names and the order Nix sorts store paths in.
///
/// ```
/// use buildimage_nixdb::StorePath;
///
/// let p: StorePath = "/nix/store/h4lyvgdxy8acvyss6p8ps7ji50n6yw0d-hello-dep-1.0".parse()?;
/// assert_eq!(p.hash_part(), "h4lyvgdxy8acvyss6p8ps7ji50n6yw0d");
/// assert_eq!(p.name(), "hello-dep-1.0");
/// assert_eq!(p.base_name(), "h4lyvgdxy8acvyss6p8ps7ji50n6yw0d-hello-dep-1.0");
/// # Ok::<(), buildimage_nixdb::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorePath {
    /// Always `STORE_DIR`, `/`, 32 nix32 characters, `-`, a valid name.
    path: String,
}

impl StorePath {
    /// Parses a full store path such as `/nix/store/<hash>-<name>`.
    ///
    /// The hash part must be 32 nix32 characters. The name must have 1 to 211 characters
    /// from `A-Z a-z 0-9 + - . _ ? =`, must not be `.` or `..`, and must not start with `.-`
    /// or `..-`. Errors quote the whole offending path.
    pub fn new(path: &str) -> Result<Self> {
        let base = path
            .strip_prefix(STORE_DIR)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| invalid(path, "not directly inside /nix/store"))?;
        check_base_name(path, base)?;
        Ok(StorePath {
            path: path.to_owned(),
        })
    }

    /// Parses a base name `<hash>-<name>`, as listed in the store directory.
    pub fn from_base_name(base_name: &str) -> Result<Self> {
        let path = format!("{STORE_DIR}/{base_name}");
        check_base_name(&path, base_name)?;
        Ok(StorePath { path })
    }

    /// The store path at the start of `path`, if there is one.
    ///
    /// `/nix/store/<hash>-<name>/bin/hello` and `/nix/store/<hash>-<name>` both give
    /// `/nix/store/<hash>-<name>`; anything outside the store, the store directory itself and
    /// entries with invalid names (such as `/nix/store/.links/...`) give `None`.
    pub fn prefix_of(path: &str) -> Option<Self> {
        let rest = path.strip_prefix(STORE_DIR)?.strip_prefix('/')?;
        let base = rest.split('/').next()?;
        Self::from_base_name(base).ok()
    }

    /// The whole path, `/nix/store/<hash>-<name>`.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// `<hash>-<name>`, the entry name in the store directory.
    pub fn base_name(&self) -> &str {
        &self.path[STORE_DIR.len() + 1..]
    }

    /// The 32 nix32 characters of the hash part.
    pub fn hash_part(&self) -> &str {
        &self.base_name()[..HASH_PART_LEN]
    }

    /// The name after the hash part and its dash.
    pub fn name(&self) -> &str {
        &self.base_name()[HASH_PART_LEN + 1..]
    }

    /// Whether this is a store derivation (its name ends with `.drv`, as Nix checks it,
    /// case-sensitively). An output's closure never contains one.
    #[allow(
        clippy::case_sensitive_file_extension_comparisons,
        reason = "Nix's isDerivation compares case-sensitively"
    )]
    pub fn is_derivation(&self) -> bool {
        self.name().ends_with(".drv")
    }

    /// Where the path lives on the host for a store rooted at `store_root`:
    /// `<store_root>/nix/store/<hash>-<name>`.
    pub fn host_path(&self, store_root: &Path) -> PathBuf {
        store_root.join(&self.path[1..])
    }
}

fn invalid(path: &str, reason: &'static str) -> Error {
    Error::InvalidStorePath {
        path: path.to_owned(),
        reason,
    }
}

fn check_base_name(path: &str, base: &str) -> Result<()> {
    let bytes = base.as_bytes();
    if bytes.len() < HASH_PART_LEN + 2 || bytes[HASH_PART_LEN] != b'-' {
        return Err(invalid(path, "expected <32-character hash>-<name>"));
    }
    if !bytes[..HASH_PART_LEN]
        .iter()
        .all(|&b| IS_NIX32[usize::from(b)])
    {
        return Err(invalid(path, "the hash part is not nix32"));
    }
    let name = &base[HASH_PART_LEN + 1..];
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(path, "the name is longer than 211 characters"));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"+-._?=".contains(&c))
    {
        return Err(invalid(
            path,
            "the name contains a character other than A-Z a-z 0-9 + - . _ ? =",
        ));
    }
    if name == "." || name == ".." || name.starts_with(".-") || name.starts_with("..-") {
        return Err(invalid(
            path,
            "the name is '.' or '..' or starts with '.-' or '..-'",
        ));
    }
    Ok(())
}

impl FromStr for StorePath {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.path, f)
    }
}

impl AsRef<str> for StorePath {
    fn as_ref(&self) -> &str {
        &self.path
    }
}

/// Lets sets and maps keyed by [`StorePath`] be queried with a `&str`.
impl Borrow<str> for StorePath {
    fn borrow(&self) -> &str {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "h4lyvgdxy8acvyss6p8ps7ji50n6yw0d";

    #[test]
    fn parses_good_paths() {
        for name in [
            "hello-dep-1.0",
            "a",
            "x+y_z?=.-",
            "..a",
            ".a-b",
            "-",
            &"n".repeat(211),
        ] {
            let path = format!("/nix/store/{H}-{name}");
            let p = StorePath::new(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(p.as_str(), path);
            assert_eq!(p.hash_part(), H);
            assert_eq!(p.name(), name);
            assert_eq!(p.base_name(), format!("{H}-{name}"));
            assert_eq!(StorePath::from_base_name(p.base_name()).unwrap(), p);
            assert_eq!(p.to_string().parse::<StorePath>().unwrap(), p);
            assert!(!p.is_derivation());
        }
        assert!(
            StorePath::new(&format!("/nix/store/{H}-x.drv"))
                .unwrap()
                .is_derivation()
        );
        assert!(
            !StorePath::new(&format!("/nix/store/{H}-x.DRV"))
                .unwrap()
                .is_derivation()
        );
    }

    #[test]
    fn rejects_bad_paths_and_names_the_path() {
        let long = format!("/nix/store/{H}-{}", "n".repeat(212));
        for path in [
            "",
            "/nix/store",
            "/nix/store/",
            &format!("/nix/store/{H}"),
            &format!("/nix/store/{H}-"),
            &format!("/nix/store/{H}_x"),
            &format!("nix/store/{H}-x"),
            &format!("/nix/store//{H}-x"),
            &format!("/gnu/store/{H}-x"),
            &format!("/nix/store/{}-x", &H[1..]),
            &format!("/nix/store/{}e-x", &H[1..]),
            &format!("/nix/store/{}E-x", &H[1..]),
            &format!("/nix/store/{H}-x/bin"),
            &format!("/nix/store/{H}-with space"),
            &format!("/nix/store/{H}-caf\u{e9}"),
            &format!("/nix/store/{H}-."),
            &format!("/nix/store/{H}-.."),
            &format!("/nix/store/{H}-.-x"),
            &format!("/nix/store/{H}-..-x"),
            &long,
        ] {
            let err = StorePath::new(path).unwrap_err();
            assert!(matches!(err, Error::InvalidStorePath { .. }), "{path}");
            assert!(err.to_string().contains(&format!("'{path}'")), "{err}");
        }
    }

    #[test]
    fn prefix_of_finds_the_store_path() {
        let p = format!("/nix/store/{H}-hello");
        for inner in ["", "/", "/bin/hello", "/a/b/c"] {
            let got = StorePath::prefix_of(&format!("{p}{inner}")).unwrap();
            assert_eq!(got.as_str(), p);
        }
        for none in [
            "/nix/store",
            "/nix/store/",
            "/nix/store/.links/abc",
            "/usr/bin/env",
            "nix/store/x",
            &format!("/nix/storex/{H}-hello"),
        ] {
            assert_eq!(StorePath::prefix_of(none), None, "{none}");
        }
    }

    #[test]
    fn orders_byte_wise_like_base_names() {
        let mut paths: Vec<StorePath> = ["-Zempty", "-doc", "-a-b", "-a", "-a.b"]
            .iter()
            .map(|n| StorePath::from_base_name(&format!("{H}{n}")).unwrap())
            .collect();
        paths.sort();
        let names: Vec<&str> = paths.iter().map(StorePath::name).collect();
        assert_eq!(names, ["Zempty", "a", "a-b", "a.b", "doc"]);
    }

    #[test]
    fn host_path_joins_the_store_root() {
        let p = StorePath::from_base_name(&format!("{H}-x")).unwrap();
        assert_eq!(
            p.host_path(Path::new("/tmp/root")),
            PathBuf::from(format!("/tmp/root/nix/store/{H}-x"))
        );
    }
}
