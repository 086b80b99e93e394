//! What a successful build says at the end: where the image went and what it holds.

use std::fmt::Write as _;

use buildimage_archive::ImageSummary;
use buildimage_cli::destination::Dest;

use crate::commands::common::Sent;
use crate::progress::Progress;

/// The "what was built" lines on standard error.
pub fn summary(
    progress: &Progress<'_>,
    dest: &Dest,
    name: &str,
    built: &ImageSummary,
    sent: &Sent,
) {
    let (verb, place) = match dest {
        _ if dest.is_stdout() => ("wrote", "standard output".to_owned()),
        Dest::Registry(_) => ("pushed", dest.shown()),
        Dest::Daemon => ("loaded", "into the Docker engine".to_owned()),
        _ => ("wrote", dest.shown()),
    };
    progress.println(&format!(
        "buildimage: {verb} {place} ({}:{}, image ID sha256:{})",
        name, built.tag, built.config_digest
    ));
    let layers = &built.layers;
    let size: u64 = layers.iter().map(|l| l.size).sum();
    let mut line = format!(
        "  {} layer{}, {} of layers",
        layers.len(),
        if layers.len() == 1 { "" } else { "s" },
        human(size),
    );
    if let Some(blobs) = &sent.blobs {
        let _ = write!(
            line,
            ", {} blob{} sent ({}), {} already there",
            blobs.uploaded,
            if blobs.uploaded == 1 { "" } else { "s" },
            human(blobs.bytes),
            blobs.skipped
        );
    } else if let Some(written) = sent.written {
        let _ = write!(line, ", {} written", human(written));
    }
    progress.println(&line);
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
