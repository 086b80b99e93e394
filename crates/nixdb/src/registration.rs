//! Closure listings as Nix writes them: `registration`, exportReferencesGraph, `store-paths`.
//!
//! Three text formats list path metadata, one field per line:
//!
//! - the `registration` file of nixpkgs `closureInfo` (and the input of
//!   `nix-store --load-db`, and the output of `nix-store --dump-db`):
//!
//!   ```text
//!   <store path>
//!   <narHash>                 sha256:<nix32> from closureInfo, bare hex from --dump-db
//!   <narSize>
//!   <deriver or empty line>
//!   <number of references>
//!   <reference>...            self-references included
//!   ```
//!
//! - the files that a derivation's `exportReferencesGraph` attribute makes: the same records
//!   **without** the hash and size lines (Nix's `makeValidityRegistration` with
//!   `showHash = false`), and always an empty deriver line. They give references only;
//!   [`PathInfo::nar_hash`] and [`PathInfo::nar_size`] stay `None`;
//!
//! - the `store-paths` file of `closureInfo`: one store path per line, no metadata.
//!
//! [`parse_registration`] tells the first two apart record by record: after the path comes
//! either a hash (never empty, never starting with `/`) or a deriver (empty or a store path).
//!
//! ```
//! use buildimage_nixdb::registration;
//!
//! let text = "\
//! /nix/store/0pwjb40g9r9bibj26530kszlz0c8sjlj-greeting.txt
//! sha256:09mw4ds0c30243mj0y077bfp94ghd0masnsi1zc7rkv7qskq6mbf
//! 200
//!
//! 1
//! /nix/store/h4lyvgdxy8acvyss6p8ps7ji50n6yw0d-hello-dep-1.0
//! ";
//! let infos = registration::parse_registration(text)?;
//! assert_eq!(infos[0].nar_size, Some(200));
//! assert_eq!(infos[0].references.len(), 1);
//! # Ok::<(), buildimage_nixdb::Error>(())
//! ```

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use crate::closure::PathInfo;
use crate::error::{Error, Result};
use crate::hash::{self, HashForm};
use crate::store_path::StorePath;

/// The name used in errors for text that did not come from a file.
const IN_MEMORY: &str = "<input>";

/// Reads a `registration` or exportReferencesGraph file.
pub fn read_registration(file: &Path) -> Result<Vec<PathInfo>> {
    let text = read_text(file)?;
    parse_records(&text, file)
}

/// Parses `registration` or exportReferencesGraph text; records keep their order.
///
/// A store path listed twice is an error. References are not checked against the listing:
/// [`crate::Store`] and [`crate::db::write_db`] do that where it matters.
pub fn parse_registration(text: &str) -> Result<Vec<PathInfo>> {
    parse_records(text, Path::new(IN_MEMORY))
}

/// Reads a `store-paths` file: one store path per line, empty lines ignored.
pub fn read_store_paths(file: &Path) -> Result<Vec<StorePath>> {
    let text = read_text(file)?;
    parse_paths(&text, file)
}

/// Parses `store-paths` text: one store path per line, empty lines ignored.
pub fn parse_store_paths(text: &str) -> Result<Vec<StorePath>> {
    parse_paths(text, Path::new(IN_MEMORY))
}

/// Writes records in the format of `closureInfo`'s `registration` file, sorted by path:
/// narHash as `sha256:<nix32>`, an empty deriver line, references sorted.
///
/// This is what `nix-store --load-db` reads. Every info needs its hash and size.
pub fn registration(infos: &[PathInfo]) -> Result<String> {
    let mut sorted: Vec<&PathInfo> = infos.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out = String::new();
    for info in sorted {
        let (Some(nar_hash), Some(nar_size)) = (info.nar_hash, info.nar_size) else {
            return Err(Error::MissingNarInfo {
                path: info.path.to_string(),
            });
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{}\n{}\n{nar_size}\n\n{}",
            info.path,
            hash::format(&nar_hash, HashForm::Nix32),
            info.references.len()
        );
        for reference in &info.references {
            let _ = writeln!(out, "{reference}");
        }
    }
    Ok(out)
}

fn read_text(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).map_err(|e| Error::io("read", file, e))
}

fn parse_paths(text: &str, file: &Path) -> Result<Vec<StorePath>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| StorePath::new(line).map_err(|e| bad(file, i + 1, e.to_string())))
        .collect()
}

fn bad(file: &Path, line: usize, reason: impl Into<String>) -> Error {
    Error::Registration {
        file: file.to_owned(),
        line,
        reason: reason.into(),
    }
}

/// A cursor over the lines of a listing, counting line numbers for errors.
struct Lines<'a> {
    inner: std::iter::Peekable<std::str::Lines<'a>>,
    number: usize,
    file: &'a Path,
}

impl<'a> Lines<'a> {
    fn next(&mut self, what: &str) -> Result<&'a str> {
        self.number += 1;
        self.inner.next().ok_or_else(|| {
            bad(
                self.file,
                self.number,
                format!("unexpected end of input, expected {what}"),
            )
        })
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        bad(self.file, self.number, reason)
    }

    fn store_path(&mut self, what: &str) -> Result<StorePath> {
        let line = self.next(what)?;
        StorePath::new(line).map_err(|e| self.error(e.to_string()))
    }

    fn number<T: std::str::FromStr>(&mut self, what: &str) -> Result<T> {
        let line = self.next(what)?;
        line.parse()
            .map_err(|_| self.error(format!("expected {what}, found '{line}'")))
    }

    /// Whether only empty lines are left.
    fn at_end(&mut self) -> bool {
        while self.inner.peek().is_some_and(|l| l.is_empty()) {
            self.inner.next();
            self.number += 1;
        }
        self.inner.peek().is_none()
    }
}

fn parse_records(text: &str, file: &Path) -> Result<Vec<PathInfo>> {
    let mut lines = Lines {
        inner: text.lines().peekable(),
        number: 0,
        file,
    };
    let mut infos = Vec::new();
    let mut seen = BTreeSet::new();
    while !lines.at_end() {
        let path = lines.store_path("a store path")?;
        if !seen.insert(path.clone()) {
            return Err(lines.error(format!("{path} is listed twice")));
        }
        let second = lines.next("a hash or a deriver")?;
        let (nar_hash, nar_size) = if second.is_empty() || second.starts_with('/') {
            // exportReferencesGraph: the deriver line follows the path directly.
            check_deriver(second).map_err(|e| lines.error(e))?;
            (None, None)
        } else {
            let nar_hash =
                hash::parse_sha256_any(second).map_err(|e| lines.error(e.to_string()))?;
            let nar_size: u64 = lines.number("the NAR size")?;
            let deriver = lines.next("a deriver line")?;
            check_deriver(deriver).map_err(|e| lines.error(e))?;
            (Some(nar_hash), Some(nar_size))
        };
        let count: usize = lines.number("the number of references")?;
        let mut references = BTreeSet::new();
        for _ in 0..count {
            references.insert(lines.store_path("a reference")?);
        }
        infos.push(PathInfo {
            path,
            nar_hash,
            nar_size,
            references,
        });
    }
    Ok(infos)
}

fn check_deriver(line: &str) -> std::result::Result<(), String> {
    if line.is_empty() {
        Ok(())
    } else {
        StorePath::new(line).map(drop).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/0pwjb40g9r9bibj26530kszlz0c8sjlj-greeting.txt";
    const B: &str = "/nix/store/h4lyvgdxy8acvyss6p8ps7ji50n6yw0d-hello-dep-1.0";
    const HASH: &str = "sha256:09mw4ds0c30243mj0y077bfp94ghd0masnsi1zc7rkv7qskq6mbf";

    fn sp(s: &str) -> StorePath {
        StorePath::new(s).unwrap()
    }

    #[test]
    fn closure_info_format_round_trips() {
        let text = format!("{A}\n{HASH}\n200\n\n2\n{A}\n{B}\n{B}\n{HASH}\n120\n\n0\n");
        let infos = parse_registration(&text).unwrap();
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0].path, sp(A));
        assert_eq!(infos[0].nar_size, Some(200));
        assert_eq!(
            hash::format(&infos[0].nar_hash.unwrap(), HashForm::Nix32),
            HASH
        );
        assert_eq!(infos[0].references, [sp(A), sp(B)].into());
        assert!(infos[1].references.is_empty());
        assert_eq!(registration(&infos).unwrap(), text);
    }

    #[test]
    fn dump_db_format_with_hex_hash_and_deriver() {
        let hex = hash::format(&hash::parse_sha256(HASH).unwrap(), HashForm::Base16);
        let bare = hex.strip_prefix("sha256:").unwrap();
        let text = format!("{A}\n{bare}\n200\n{B}\n1\n{B}\n");
        let infos = parse_registration(&text).unwrap();
        assert_eq!(infos[0].nar_hash, Some(hash::parse_sha256(HASH).unwrap()));
        assert_eq!(infos[0].references, [sp(B)].into());
    }

    #[test]
    fn export_references_graph_format_has_no_hash() {
        let text = format!("{A}\n\n2\n{A}\n{B}\n{B}\n\n0\n");
        let infos = parse_registration(&text).unwrap();
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0].nar_hash, None);
        assert_eq!(infos[0].nar_size, None);
        assert_eq!(infos[0].references, [sp(A), sp(B)].into());
        assert!(
            registration(&infos).is_err(),
            "cannot write what has no hash"
        );
    }

    #[test]
    fn empty_input_is_an_empty_listing() {
        assert!(parse_registration("").unwrap().is_empty());
        assert!(parse_registration("\n\n").unwrap().is_empty());
        assert_eq!(registration(&[]).unwrap(), "");
    }

    #[test]
    fn errors_give_the_line() {
        for (text, line) in [
            (format!("{A}\n{HASH}\n"), 3),
            (format!("{A}\n{HASH}\nbig\n\n0\n"), 3),
            (format!("{A}\nsha256:xyz\n200\n\n0\n"), 2),
            (format!("{A}\n{HASH}\n200\nderiver\n0\n"), 4),
            (format!("{A}\n{HASH}\n200\n\n2\n{B}\n"), 7),
            (format!("{A}\n{HASH}\n200\n\n1\n/nix/store/bad\n"), 6),
            (format!("{A}\n\n0\n{A}\n\n0\n"), 4),
            ("relative\n".to_owned(), 1),
        ] {
            let err = parse_registration(&text).unwrap_err();
            let Error::Registration { line: got, .. } = &err else {
                panic!("{err}");
            };
            assert_eq!(*got, line, "{text:?}: {err}");
        }
    }

    #[test]
    fn store_paths_file() {
        let paths = parse_store_paths(&format!("{A}\n{B}\n\n")).unwrap();
        assert_eq!(paths, [sp(A), sp(B)]);
        let err = parse_store_paths(&format!("{A}\nnope\n")).unwrap_err();
        assert!(err.to_string().starts_with("<input>, line 2: "), "{err}");
    }
}
