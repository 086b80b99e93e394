//! A program that lives in the Nix store runs in Docker, as root and as a user who can
//! only traverse `/nix/store` because `/nix` and `/nix/store` are 0555.

use serde_json::json;

use super::{BUSYBOX, BUSYBOX_ROOT, build, fixture, scratch};
use buildimage_test_support::docker;

#[test]
fn store_program_runs_in_docker_as_root_and_as_non_root_user() {
    let fx = fixture();
    let dir = scratch();
    // keepContentsDirlinks keeps `bin -> /nix/store/...-busybox-static/bin` a symlink, so
    // /bin/sh is the store's busybox (without it, rsync -k would copy busybox into /bin).
    let spec = json!({
        "name": "nix-busybox",
        "tag": "1",
        "copyToRoot": fx.path(BUSYBOX_ROOT),
        "keepContentsDirlinks": true,
    });
    let built = build(dir.path(), "busybox", &spec, &fx.store, &[]);
    let busybox = fx.path(BUSYBOX);
    assert_eq!(
        built.store_paths(),
        fx.closure_of(&[BUSYBOX]),
        "--json storePaths"
    );

    // Build first, then take the daemon: Docker checks run one at a time.
    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    assert_eq!(image.name(), "nix-busybox:1");

    let script = "echo ok; readlink /bin; id -u; ls /nix/store";
    let want = |uid: u32| format!("ok\n{busybox}/bin\n{uid}\n{}\n", super::base_name(busybox));
    let out = docker.run(image.name(), &["/bin/sh", "-c", "echo ok"]);
    assert_eq!(out.assert_success(), "ok\n");
    let out = docker.run(image.name(), &["/bin/sh", "-c", script]);
    assert_eq!(out.assert_success(), want(0), "as root");
    let out = docker.run_with(
        image.name(),
        &["--user", "1000:1000"],
        &["/bin/sh", "-c", script],
    );
    assert_eq!(
        out.assert_success(),
        want(1000),
        "as uid 1000, who must traverse /nix and /nix/store"
    );
}
