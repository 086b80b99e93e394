//! The whiteout rules of OCI layers and of overlayfs, in one place.
//!
//! A layer deletes what its lower layers hold with *whiteouts*: an empty file `.wh.NAME`
//! deletes `NAME` with everything below it, and `.wh..wh..opq` in a folder hides everything
//! the lower layers had in that folder (an *opaque* folder). Names starting with
//! `.wh..wh.` other than the opaque marker are AUFS metadata (`.wh..wh.plnk`, …), never
//! files of the image.
//!
//! overlayfs records the same two facts differently in its upper folder: a deletion is a
//! character device 0/0 of the deleted name, and an opaque folder carries the extended
//! attribute `trusted.overlay.opaque` (or `user.overlay.opaque` when the overlay is mounted
//! with `userxattr`, as in a user namespace) set to `y`.
//!
//! This module is used wherever those rules apply: [`crate::Tree::from_upper`] turns an
//! upper folder into OCI whiteouts, the base image reader applies whiteouts to learn what
//! a base holds, and the sandbox turns OCI whiteouts back into overlayfs ones.

/// The prefix of a whiteout file: `.wh.NAME` deletes `NAME` of the lower layers.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// The opaque-folder marker: its folder hides everything the lower layers had in it.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Names starting with this (other than [`OPAQUE_MARKER`]) are AUFS metadata.
pub const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";

/// Permission bits of the whiteout files buildimage writes (`touch` under umask 022, as
/// nixpkgs makes them).
pub const WHITEOUT_MODE: u32 = 0o644;

/// The extended attribute overlayfs marks opaque folders with when mounted by root of the
/// initial user namespace.
pub const OPAQUE_XATTR_TRUSTED: &str = "trusted.overlay.opaque";

/// The extended attribute overlayfs marks opaque folders with when mounted with
/// `userxattr` (in a user namespace).
pub const OPAQUE_XATTR_USER: &str = "user.overlay.opaque";

/// The prefixes of overlayfs' own extended attributes, which are never image content.
pub const OVERLAY_XATTR_PREFIXES: [&str; 2] = ["trusted.overlay.", "user.overlay."];

/// What the last component of a member name means to a layer's reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker<'a> {
    /// `.wh..wh..opq`: the folder holding it is opaque.
    Opaque,
    /// `.wh.NAME`: deletes `NAME` (never empty, `.` or `..`).
    Whiteout(&'a [u8]),
    /// `.wh.` followed by nothing, `.` or `..`: a whiteout that names nothing.
    BadWhiteout,
    /// Other `.wh..wh.` names: AUFS metadata, to be ignored.
    Metadata,
    /// An ordinary name.
    Plain,
}

/// Classifies the last component `name` of a member name.
pub fn classify(name: &[u8]) -> Marker<'_> {
    if name == OPAQUE_MARKER {
        return Marker::Opaque;
    }
    if name.starts_with(WHITEOUT_META_PREFIX) {
        return Marker::Metadata;
    }
    match name.strip_prefix(WHITEOUT_PREFIX) {
        Some(b"" | b"." | b"..") => Marker::BadWhiteout,
        Some(hidden) => Marker::Whiteout(hidden),
        None => Marker::Plain,
    }
}

/// Whether `name` (a last component) is a whiteout or the opaque marker: such entries come
/// before their siblings in a layer, as the OCI layer specification asks.
pub fn is_whiteout(name: &[u8]) -> bool {
    name.starts_with(WHITEOUT_PREFIX)
}

/// Whether an extended attribute belongs to overlayfs rather than to the image.
pub fn is_overlay_xattr(name: &str) -> bool {
    OVERLAY_XATTR_PREFIXES.iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified() {
        assert_eq!(classify(b".wh..wh..opq"), Marker::Opaque);
        assert_eq!(classify(b".wh..wh.plnk"), Marker::Metadata);
        assert_eq!(classify(b".wh.etc"), Marker::Whiteout(b"etc"));
        assert_eq!(classify(b".wh."), Marker::BadWhiteout);
        assert_eq!(classify(b".wh.."), Marker::BadWhiteout);
        assert_eq!(classify(b".wh..."), Marker::BadWhiteout);
        assert_eq!(classify(b".wh...."), Marker::Whiteout(b"..."));
        assert_eq!(classify(b".bashrc"), Marker::Plain);
        assert!(is_overlay_xattr("trusted.overlay.opaque"));
        assert!(!is_overlay_xattr("user.mime_type"));
    }
}
