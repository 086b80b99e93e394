//! `buildimage cache gc`: keep the layer cache within a size.

use anyhow::{Context, Result};

use buildimage_archive::LayerCache;
use buildimage_cli::args::{CacheArgs, CacheCommand};

/// Runs the cache command `args` names.
pub fn run(args: &CacheArgs, quiet: bool) -> Result<()> {
    match &args.command {
        CacheCommand::Gc { cache, max_size } => {
            let dir = match cache {
                Some(dir) => dir.clone(),
                None => LayerCache::default_dir().context(
                    "No cache folder: neither XDG_CACHE_HOME nor HOME is set; give --cache DIR",
                )?,
            };
            let cache = LayerCache::open(&dir, *max_size)
                .with_context(|| format!("Cannot use the layer cache {}", dir.display()))?;
            let removed = cache.trim();
            if !quiet {
                eprintln!(
                    "buildimage: removed {removed} cache entr{} from {}, {} left",
                    if removed == 1 { "y" } else { "ies" },
                    dir.display(),
                    cache.len()
                );
            }
            Ok(())
        }
    }
}
