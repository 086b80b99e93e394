//! SHA-256 NAR hashes in the textual forms Nix reads and writes.
//!
//! The same digest appears as `sha256:<64 hex digits>` in the database, `sha256:<52 nix32>`
//! in a `registration` file, `sha256-<base64>` (SRI) in `nix path-info --json`, and bare hex
//! in `nix-store --dump-db`. [`parse_sha256`] reads every form Nix accepts in its database;
//! [`parse_sha256_any`] also takes the bare forms that `nix-store --load-db` accepts.
//!
//! ```
//! use buildimage_nixdb::hash::{self, HashForm};
//!
//! let digest = hash::parse_sha256("sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73")?;
//! assert_eq!(
//!     hash::format(&digest, HashForm::Base16),
//!     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
//! );
//! assert_eq!(
//!     hash::format(&digest, HashForm::Sri),
//!     "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
//! );
//! # Ok::<(), buildimage_nixdb::Error>(())
//! ```

use data_encoding::{BASE64, HEXLOWER, HEXLOWER_PERMISSIVE};

use crate::error::{Error, Result};
use crate::nix32;

/// A textual form of a SHA-256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashForm {
    /// `sha256:` and 64 lowercase hex digits: what Nix writes into `ValidPaths.hash`.
    Base16,
    /// `sha256:` and 52 nix32 characters: `closureInfo`'s `registration`, `nix-store -q --hash`.
    Nix32,
    /// 52 nix32 characters without prefix: `nix-hash --type sha256 --base32`.
    Nix32Bare,
    /// `sha256-` and 44 base64 characters (SRI): `nix path-info --json`.
    Sri,
}

/// Formats a digest in the given form.
pub fn format(digest: &[u8; 32], form: HashForm) -> String {
    match form {
        HashForm::Base16 => format!("sha256:{}", HEXLOWER.encode(digest)),
        HashForm::Nix32 => format!("sha256:{}", nix32::encode(digest)),
        HashForm::Nix32Bare => nix32::encode(digest),
        HashForm::Sri => format!("sha256-{}", BASE64.encode(digest)),
    }
}

/// Parses a SHA-256 hash that names its algorithm, as Nix reads `ValidPaths.hash`.
///
/// Accepted: `sha256:` followed by 64 hex digits, 52 nix32 characters or 44 base64
/// characters; and SRI, `sha256-` followed by base64. A hash without the algorithm is
/// rejected, as Nix rejects it in the database ("does not include a type").
pub fn parse_sha256(text: &str) -> Result<[u8; 32]> {
    if let Some(rest) = text.strip_prefix("sha256:") {
        parse_digest(text, rest)
    } else if let Some(rest) = text.strip_prefix("sha256-") {
        let bytes = base64_decode(rest).ok_or_else(|| invalid(text, "bad SRI base64"))?;
        to_digest(text, &bytes)
    } else if text.contains(':') || looks_like_sri(text) {
        Err(invalid(text, "not a SHA-256 hash"))
    } else {
        Err(invalid(text, "the hash does not include a type"))
    }
}

/// Parses a SHA-256 hash with or without the algorithm, as `nix-store --load-db` does.
///
/// Everything [`parse_sha256`] accepts, plus the bare digest as 64 hex digits, 52 nix32
/// characters or 44 base64 characters.
pub fn parse_sha256_any(text: &str) -> Result<[u8; 32]> {
    if text.contains(':') || looks_like_sri(text) {
        parse_sha256(text)
    } else {
        parse_digest(text, text)
    }
}

/// Whether `text` has the shape `<algorithm>-...` of an SRI hash.
fn looks_like_sri(text: &str) -> bool {
    ["md5-", "sha1-", "sha256-", "sha512-"]
        .iter()
        .any(|p| text.starts_with(p))
}

/// Decodes the digest part of a hash by its length, like Nix's `Hash` constructor.
fn parse_digest(whole: &str, rest: &str) -> Result<[u8; 32]> {
    let bytes = match rest.len() {
        64 => from_hex(rest).ok_or_else(|| invalid(whole, "bad hex digit"))?,
        52 => nix32::decode(rest).map_err(|_| invalid(whole, "bad nix32"))?,
        44 => base64_decode(rest).ok_or_else(|| invalid(whole, "bad base64"))?,
        _ => return Err(invalid(whole, "wrong length for a SHA-256 digest")),
    };
    to_digest(whole, &bytes)
}

fn to_digest(whole: &str, bytes: &[u8]) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| invalid(whole, "wrong length for a SHA-256 digest"))
}

fn invalid(text: &str, reason: &'static str) -> Error {
    Error::InvalidHash {
        hash: text.to_owned(),
        reason,
    }
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    HEXLOWER_PERMISSIVE.decode(text.as_bytes()).ok()
}

/// Strict standard base64: padded to a multiple of 4, no stray bits in the last character.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of the empty string.
    const EMPTY_HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const EMPTY_NIX32: &str = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
    const EMPTY_B64: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    fn empty() -> [u8; 32] {
        from_hex(EMPTY_HEX).unwrap().try_into().unwrap()
    }

    #[test]
    fn parses_every_prefixed_form() {
        for text in [
            format!("sha256:{EMPTY_HEX}"),
            format!("sha256:{}", EMPTY_HEX.to_uppercase()),
            format!("sha256:{EMPTY_NIX32}"),
            format!("sha256:{EMPTY_B64}"),
            format!("sha256-{EMPTY_B64}"),
        ] {
            assert_eq!(parse_sha256(&text).unwrap(), empty(), "{text}");
            assert_eq!(parse_sha256_any(&text).unwrap(), empty(), "{text}");
        }
    }

    #[test]
    fn bare_forms_only_where_load_db_takes_them() {
        for text in [EMPTY_HEX, EMPTY_NIX32, EMPTY_B64] {
            let err = parse_sha256(text).unwrap_err();
            assert!(err.to_string().contains("does not include a type"), "{err}");
            assert_eq!(parse_sha256_any(text).unwrap(), empty(), "{text}");
        }
    }

    #[test]
    fn rejects_other_algorithms_and_garbage() {
        for text in [
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
            "sha256:",
            "sha256:xyz",
            &format!("sha256:{}", &EMPTY_HEX[1..]),
            &format!("sha256:{}g", &EMPTY_HEX[1..]),
            &format!("sha256:{}e", &EMPTY_NIX32[1..]),
            &format!("sha256-{}", &EMPTY_B64[1..]),
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=",
        ] {
            assert!(parse_sha256_any(text).is_err(), "{text}");
        }
    }

    #[test]
    fn formats() {
        let d = empty();
        assert_eq!(format(&d, HashForm::Base16), format!("sha256:{EMPTY_HEX}"));
        assert_eq!(format(&d, HashForm::Nix32), format!("sha256:{EMPTY_NIX32}"));
        assert_eq!(format(&d, HashForm::Nix32Bare), EMPTY_NIX32);
        assert_eq!(format(&d, HashForm::Sri), format!("sha256-{EMPTY_B64}"));
    }
}
