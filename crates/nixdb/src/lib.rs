//! Nix store paths, nix32, NAR serialisation, reference scanning, closures and the Nix
//! SQLite database, without running Nix.
//!
//! `buildimage` reads store paths from a store on disk (`--store DIR`), appends their closure
//! to an image layer, and with `includeNixDB` registers them in a database inside the image.
//! This crate does the Nix side of that: [`StorePath`] parses paths, [`nix32`] and [`hash`]
//! handle Nix's hash notations, [`nar`] serialises a path exactly as `nix-store --dump`
//! does and computes `narHash`/`narSize`, [`refs`] finds which hash parts some bytes
//! contain, [`Store`] computes closures from a store's database, from `closureInfo`
//! listings ([`registration`]) or by scanning, and [`db::write_db`] writes the database
//! `nix-store --load-db` would write.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use buildimage_nixdb::{Store, StorePath, db};
//!
//! // A store with two paths; `app` names `dep`. There is no database, so references are
//! // found by scanning, as Nix finds them after a build.
//! let root = tempfile::tempdir()?;
//! std::fs::create_dir_all(root.path().join("nix/store"))?;
//! let dep = StorePath::new("/nix/store/h4lyvgdxy8acvyss6p8ps7ji50n6yw0d-dep")?;
//! let app = StorePath::new("/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-app")?;
//! std::fs::write(dep.host_path(root.path()), "data")?;
//! std::fs::write(app.host_path(root.path()), format!("#!/bin/sh\nexec cat {dep}\n"))?;
//!
//! let store = Store::open(root.path())?;
//! let closure = store.closure_with_nar_info(&[app.clone()])?;
//! assert_eq!(closure.paths().collect::<Vec<_>>(), [&app, &dep]);
//! assert_eq!(closure.get(&app).unwrap().references, [dep.clone()].into());
//!
//! // The database of an image holding that closure.
//! let image = tempfile::tempdir()?;
//! db::write_db(&image.path().join(db::DB_DIR), closure.as_slice(), 315_532_800)?;
//! assert_eq!(std::fs::read(image.path().join("nix/var/nix/db/schema"))?, b"10");
//! # Ok(())
//! # }
//! ```
//!
//! # Determinism
//!
//! - [`nar::dump`] writes the bytes of `nix-store --dump`: directory entries sorted by the
//!   raw bytes of their names, nothing recorded but what a NAR holds. `narHash` and `narSize`
//!   follow from them.
//! - Scan results do not depend on how the input is split into chunks, and closures do not
//!   depend on the order of the roots or on the number of rayon threads: sets are
//!   [`BTreeSet`](std::collections::BTreeSet)s, closures are sorted byte-wise by path, and
//!   of several errors the one for the first path in that order is reported.
//! - [`db::write_db`] gives identical bytes for the same set of path infos (in any order)
//!   and the same registration time, with the bundled SQLite library this crate is built
//!   with (SQLite records its version in the file). Rows are inserted in sorted order in
//!   one transaction; the file is left in WAL mode after a clean close, with no side files.
//! - Hash maps appear only as lookup tables ([`refs::Scanner`]), never iterated into output.

pub mod closure;
pub mod db;
mod error;
pub mod hash;
pub mod nar;
pub mod nix32;
pub mod refs;
pub mod registration;
pub mod store_path;

pub use closure::{Closure, PathInfo, Store};
pub use db::write_db;
pub use error::{Error, Result};
pub use nar::NarInfo;
pub use refs::Scanner;
pub use store_path::StorePath;
