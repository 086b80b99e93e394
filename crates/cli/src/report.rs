//! What a successful build says at the end: where the image went and what it holds.

use std::path::Path;

use buildimage_archive::ImageSummary;

use crate::progress::Progress;

/// The "what was built" lines on standard error.
pub fn summary(
    progress: &Progress<'_>,
    shown: &Path,
    name: &str,
    built: &ImageSummary,
    written: u64,
) {
    let place = if shown == Path::new("-") {
        "standard output".to_owned()
    } else {
        shown.display().to_string()
    };
    progress.println(&format!(
        "buildimage: wrote {place} ({}:{}, image ID sha256:{})",
        name, built.tag, built.config_digest
    ));
    let layers = &built.layers;
    let size: u64 = layers.iter().map(|l| l.size).sum();
    progress.println(&format!(
        "  {} layer{}, {} of layers, {} written",
        layers.len(),
        if layers.len() == 1 { "" } else { "s" },
        human(size),
        human(written)
    ));
}

/// A size for people: `512 B`, `3.4 KiB`, `1.2 GiB`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    // Shown to one decimal: the precision f64 loses above 2^53 bytes does not show.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn sizes_for_people() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
