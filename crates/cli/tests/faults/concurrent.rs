//! Two builds of different specs writing the same OUT at once: each writes its own
//! temporary file and renames it into place, so OUT ends up as one complete image, never
//! a mix, and no temporary file is left. The test checks that the two temporary files
//! did exist side by side, so that the builds really overlapped.

use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};

use serde_json::json;

use buildimage_test_support::{Buildimage, mkdir, names, sha256_hex, write};

use super::{leftovers, noise, test_dir};

/// Size of each build's source file: big enough that the two builds overlap.
const SOURCE_SIZE: usize = 24 << 20;

/// How many times the two race.
const ROUNDS: usize = 4;

/// Starts `buildimage build spec -o out`.
fn start(cwd: &Path, spec: &Path, out: &Path) -> Child {
    Buildimage::new()
        .cwd(cwd)
        .build(spec)
        .out(out)
        .spawn(Stdio::null(), Stdio::piped())
}

#[test]
fn two_builds_to_one_output_leave_one_complete_image() {
    let scratch = test_dir();
    let mut specs = Vec::new();
    let mut expected = Vec::new();
    for (i, name) in ["one", "two"].into_iter().enumerate() {
        let root = scratch.join(format!("root-{name}"));
        mkdir(&root, 0o755);
        write(
            &root.join("data"),
            &noise(SOURCE_SIZE, i as u64 + 10),
            0o644,
        );
        let spec = scratch.join(format!("{name}.json"));
        let text = json!({
            "name": name, "tag": "t", "copyToRoot": format!("root-{name}"), "compressor": "gz",
        });
        fs::write(&spec, text.to_string()).expect("write a spec");
        // Each image built alone, for reference.
        let alone = scratch.join(format!("{name}.tar.gz"));
        Buildimage::new()
            .cwd(scratch.path())
            .build(&spec)
            .out(&alone)
            .run_ok();
        expected.push(sha256_hex(&fs::read(&alone).expect("read an image")));
        specs.push(spec);
    }
    assert_ne!(expected[0], expected[1]);

    let race = scratch.join("race");
    mkdir(&race, 0o755);
    let out = race.join("image.tar.gz");
    let mut winners = Vec::new();
    let mut overlapped = 0;
    for round in 0..ROUNDS {
        // Alternate who starts first.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut children: Vec<(usize, Child)> = order
            .iter()
            .map(|&i| (i, start(scratch.path(), &specs[i], &out)))
            .collect();
        // Watch for the moment both write at once: two temporary files side by side.
        loop {
            if leftovers(&race).len() == 2 {
                overlapped += 1;
                break;
            }
            let mut running = 0;
            for (_, child) in &mut children {
                if child.try_wait().expect("poll buildimage").is_none() {
                    running += 1;
                }
            }
            if running < 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for (i, child) in children {
            let output = child.wait_with_output().expect("wait for buildimage");
            assert!(
                output.status.success(),
                "round {round}, build {i} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let got = sha256_hex(&fs::read(&out).expect("read OUT"));
        let winner = expected
            .iter()
            .position(|e| *e == got)
            .unwrap_or_else(|| panic!("round {round}: OUT is neither image (sha256 {got})"));
        winners.push(winner);
        assert_eq!(names(&race), ["image.tar.gz"], "round {round}: only OUT");
        assert_eq!(leftovers(&race), Vec::<String>::new());
    }
    eprintln!("winners of the {ROUNDS} rounds: {winners:?}; both writing at once in {overlapped}");
    assert!(
        overlapped > 0,
        "the two builds never wrote at the same time; make SOURCE_SIZE larger"
    );
}
