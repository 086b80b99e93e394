//! Integration tests of buildimage-sandbox: real namespaces, a real overlay and Debian's
//! static busybox as the image. They need root, like `runAsRoot` in nixpkgs' VM.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use buildimage_layer::{
    Cancel, Entry, EntryKind, LayerWriter, Owner, Tree, UpperOptions, Warnings,
};
use buildimage_sandbox::{
    Error, FAKE_CHROOT_MOUNTS, FakeRoot, Limits, RootOutcome, RootRun, extract_layer,
    host_root_ids, run_as_root, run_fake_root,
};

const BIN: &str = env!("CARGO_BIN_EXE_buildimage-sandbox-test");

/// Applets the test image links to busybox.
const APPLETS: &[&str] = &[
    "sh", "ash", "cat", "chmod", "chown", "echo", "ls", "mkdir", "mkfifo", "mknod", "rm", "sleep",
    "touch", "id", "hostname", "stat", "true", "false",
];

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root (runAsRoot mounts an overlay and creates namespaces): run them as root, as CI does"
    );
}

fn busybox() -> Vec<u8> {
    let data = fs::read("/bin/busybox").unwrap_or_else(|e| {
        panic!("/bin/busybox is needed by this test ({e}): apt-get install busybox-static")
    });
    assert!(
        is_static_elf(&data),
        "/bin/busybox must be the static one: apt-get install busybox-static"
    );
    data
}

/// Whether a 64-bit little-endian ELF file has no program interpreter (`PT_INTERP`).
fn is_static_elf(data: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return false;
    }
    let phoff = usize::try_from(u64::from_le_bytes(data[0x20..0x28].try_into().unwrap())).unwrap();
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).all(|i| {
        let at = phoff + i * size;
        u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) != 3
    })
}

/// A tar written entry by entry with full control over names and headers.
struct TarFile {
    builder: tar::Builder<Vec<u8>>,
}

impl TarFile {
    fn new() -> Self {
        TarFile {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    /// Appends an entry whose name is written raw (no checks, so `..` and `/` get through).
    fn raw(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        mode: u32,
        owner: (u64, u64),
        link: Option<&str>,
        data: &[u8],
    ) -> &mut Self {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(owner.0);
        header.set_gid(owner.1);
        header.set_mtime(315_532_800);
        header.set_size(data.len() as u64);
        if let Some(link) = link {
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        self.builder.append(&header, data).unwrap();
        self
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.raw(name, tar::EntryType::Directory, mode, (0, 0), None, b"")
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.raw(name, tar::EntryType::Regular, mode, (0, 0), None, data)
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            name,
            tar::EntryType::Symlink,
            0o777,
            (0, 0),
            Some(target),
            b"",
        )
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Link, 0o644, (0, 0), Some(target), b"")
    }

    fn write(&mut self, path: &Path) -> PathBuf {
        let builder = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        fs::write(path, builder.into_inner().unwrap()).unwrap();
        path.to_owned()
    }
}

/// The busybox image: `/bin` with busybox and its applets, `/etc/motd`, `/var/cache/old`.
fn busybox_tar(with_sh: bool) -> TarFile {
    let mut tar = TarFile::new();
    tar.dir("./", 0o755)
        .dir("./bin/", 0o755)
        .file("./bin/busybox", 0o755, &busybox());
    for applet in APPLETS {
        if *applet != "sh" || with_sh {
            tar.symlink(&format!("./bin/{applet}"), "busybox");
        }
    }
    tar.dir("./etc/", 0o755)
        .file("./etc/motd", 0o644, b"welcome\n")
        .dir("./var/", 0o755)
        .dir("./var/cache/", 0o755)
        .file("./var/cache/old", 0o644, b"old\n");
    tar
}

/// One test's scratch space: base layers, an upper folder, a work folder.
struct Sandbox {
    dir: tempfile::TempDir,
    lower: Vec<PathBuf>,
    runs: usize,
}

impl Sandbox {
    fn new() -> Self {
        require_root();
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
            lower: Vec::new(),
            runs: 0,
        }
    }

    fn busybox() -> Self {
        let mut sb = Sandbox::new();
        let tar = busybox_tar(true).write(&sb.path("base.tar"));
        sb.add_layer(&tar);
        sb
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn add_layer(&mut self, tar: &Path) {
        let dest = self.path(&format!("lower{}", self.lower.len()));
        extract_layer(tar, &dest).unwrap();
        self.lower.push(dest);
    }

    /// A request with a fresh, empty upper folder.
    fn request(&mut self, script: &str) -> RootRun {
        self.runs += 1;
        let upper = self.path(&format!("upper{}", self.runs));
        fs::create_dir(&upper).unwrap();
        fs::set_permissions(&upper, fs::Permissions::from_mode(0o775)).unwrap();
        RootRun {
            lower: self.lower.clone(),
            upper,
            work: self.path("work"),
            script: script.to_owned(),
            shell: None,
            store: None,
            ..RootRun::default()
        }
    }

    /// Runs `req` and checks that nothing stays behind, whatever the outcome. What the run
    /// recorded (devices, which no user namespace may make) is kept for [`upper_tree`].
    fn run(&self, req: &RootRun) -> Result<(), Error> {
        let result = run_as_root(req, Path::new(BIN), &Cancel::new());
        self.assert_clean(&req.work);
        result.map(|outcome| RECORDED.with(|r| *r.borrow_mut() = outcome))
    }

    fn assert_clean(&self, work: &Path) {
        assert_no_mounts(self.dir.path());
        if work.exists() {
            let left: Vec<_> = fs::read_dir(work).unwrap().collect();
            assert!(left.is_empty(), "the scratch folder stayed: {left:?}");
        }
    }

    /// Runs `script` over the layers so far, then packs its upper folder as a layer and
    /// extracts that as the next lower folder, as a chain of images would.
    fn run_and_stack(&mut self, script: &str) {
        let req = self.request(script);
        self.run(&req).unwrap();
        let entries = upper_tree(&req.upper).entries(&Owner::root(), 315_532_800);
        let mut writer = LayerWriter::new(Vec::new());
        writer.append_all(&entries).unwrap();
        let (bytes, _) = writer.finish().unwrap();
        let tar = self.path(&format!("layer{}.tar", self.runs));
        fs::write(&tar, bytes).unwrap();
        self.add_layer(&tar);
    }
}

/// Fails when any mount point lies under `dir`.
fn assert_no_mounts(dir: &Path) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_str().unwrap();
    let left: Vec<&str> = mountinfo.lines().filter(|l| l.contains(dir)).collect();
    assert!(left.is_empty(), "mounts stayed behind: {left:#?}");
}

thread_local! {
    /// What the last run of this test's thread recorded.
    static RECORDED: std::cell::RefCell<RootOutcome> =
        std::cell::RefCell::new(RootOutcome::default());
}

/// The upper folder read back as the pipeline reads it: the caller's ids or the private
/// range shifted back, and what the last run recorded.
fn upper_tree(upper: &Path) -> Tree {
    let (root_uid, root_gid) = host_root_ids();
    RECORDED.with(|recorded| {
        let recorded = recorded.borrow();
        let options = UpperOptions {
            root_uid,
            root_gid,
            id_shift: recorded.id_shift(),
            recordings: Some(&recorded.recordings),
        };
        Tree::from_upper(upper, &options, &mut Warnings::default()).unwrap()
    })
}

/// The layer entries of an upper folder by name; entries without a recorded owner would
/// get 4242, which must never show.
fn capture(upper: &Path) -> BTreeMap<String, Entry> {
    upper_tree(upper)
        .entries(&Owner::numeric(4242, 4242), 315_532_800)
        .into_iter()
        .map(|e| (String::from_utf8(e.name.clone()).unwrap(), e))
        .collect()
}

fn names(entries: &BTreeMap<String, Entry>) -> Vec<&str> {
    entries.keys().map(String::as_str).collect()
}

#[test]
fn seed_example_writes_data_and_keeps_only_tmp() {
    let mut sb = Sandbox::busybox();
    let req = sb.request("mkdir -p /data && echo hello > /data/hello");
    sb.run(&req).unwrap();
    let entries = capture(&req.upper);
    assert_eq!(
        names(&entries),
        ["./", "./data/", "./data/hello", "./tmp/"],
        "dev, proc, sys were made for the run only"
    );
    assert_eq!(fs::read(req.upper.join("data/hello")).unwrap(), b"hello\n");
    assert_eq!(entries["./tmp/"].mode, 0o755);
    assert_eq!(entries["./"].mode, 0o775);
    for entry in entries.values() {
        assert_eq!((entry.owner.uid, entry.owner.uname.as_ref()), (0, "root"));
    }
}

#[test]
fn chown_and_setuid_are_recorded_with_real_owners() {
    let mut sb = Sandbox::busybox();
    let req = sb.request(
        "touch /f && chown 1000:1000 /f && chmod 4755 /f && mkdir /home && chown 1000:100 /home",
    );
    sb.run(&req).unwrap();
    let entries = capture(&req.upper);
    let f = &entries["./f"];
    assert_eq!((f.owner.uid, f.owner.gid, f.mode), (1000, 1000, 0o4755));
    assert_eq!((f.owner.uname.as_ref(), f.owner.gname.as_ref()), ("", ""));
    let home = &entries["./home/"];
    assert_eq!((home.owner.uid, home.owner.gid), (1000, 100));
}

#[test]
fn device_nodes_and_fifos_are_recorded() {
    let mut sb = Sandbox::busybox();
    let req = sb.request("mknod /null c 1 3 && mknod /loop b 7 0 && mkfifo /pipe");
    sb.run(&req).unwrap();
    let entries = capture(&req.upper);
    assert_eq!(
        entries["./null"].kind,
        EntryKind::CharDevice { major: 1, minor: 3 }
    );
    assert_eq!(
        entries["./loop"].kind,
        EntryKind::BlockDevice { major: 7, minor: 0 }
    );
    assert_eq!(entries["./pipe"].kind, EntryKind::Fifo);
}

#[test]
fn deleting_a_lower_file_gives_a_whiteout() {
    let mut sb = Sandbox::busybox();
    let req = sb.request("rm /etc/motd");
    sb.run(&req).unwrap();
    let entries = capture(&req.upper);
    assert_eq!(
        names(&entries),
        ["./", "./etc/", "./etc/.wh.motd", "./tmp/"]
    );
    let wh = &entries["./etc/.wh.motd"];
    assert_eq!(wh.kind, EntryKind::Data(Vec::new()));
    assert_eq!((wh.owner.uid, wh.mode), (0, 0o644));
}

#[test]
fn a_recreated_folder_is_opaque_and_its_marker_comes_first() {
    let mut sb = Sandbox::busybox();
    let req = sb.request(
        "rm -rf /var/cache && mkdir /var/cache && echo new > /var/cache/-first && echo b > /var/cache/.bashrc",
    );
    sb.run(&req).unwrap();
    let tree = upper_tree(&req.upper);
    let order: Vec<String> = tree
        .entries(&Owner::root(), 0)
        .iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect();
    assert_eq!(
        order,
        [
            "./",
            "./tmp/",
            "./var/",
            "./var/cache/",
            "./var/cache/.wh..wh..opq",
            "./var/cache/-first",
            "./var/cache/.bashrc",
        ]
    );
}

#[test]
fn three_chained_runs_append_lines_in_order() {
    let mut sb = Sandbox::busybox();
    sb.run_and_stack("echo one >> /log && rm /etc/motd");
    sb.run_and_stack("echo two >> /log && test ! -e /etc/motd");
    sb.run_and_stack("echo three >> /log && rm -rf /var/cache && mkdir /var/cache");
    let req = sb.request("cat /log > /seen && ls -a /var/cache > /cache && test ! -e /etc/motd");
    sb.run(&req).unwrap();
    assert_eq!(
        fs::read_to_string(req.upper.join("seen")).unwrap(),
        "one\ntwo\nthree\n"
    );
    assert_eq!(
        fs::read_to_string(req.upper.join("cache")).unwrap(),
        ".\n..\n",
        "the opaque folder of run three hides the base's files"
    );
}

#[test]
fn a_failing_script_reports_its_status_and_its_output_goes_to_stderr() {
    let mut sb = Sandbox::busybox();
    let req = sb.request("echo to-stdout; echo to-stderr >&2; touch /partial; exit 3");
    let err = sb.run(&req).unwrap_err();
    assert!(
        matches!(err, Error::ScriptFailed { status: 3, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "The script failed with exit status 3 (its error output is above)"
    );

    // Through a caller process, to see its streams.
    let req = sb.request("echo to-stdout; echo to-stderr >&2; exit 3");
    let spec = sb.path("req.json");
    fs::write(&spec, serde_json::to_vec(&req).unwrap()).unwrap();
    let out = Command::new(BIN).arg("run").arg(&spec).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    assert!(stderr.contains("to-stdout\n"), "{stderr}");
    assert!(stderr.contains("to-stderr\n"), "{stderr}");
    assert!(stderr.contains("exit status 3"), "{stderr}");
    sb.assert_clean(&req.work);
}

#[test]
fn the_sandbox_has_no_network_but_loopback() {
    let mut sb = Sandbox::busybox();
    let req = sb.request("cat /proc/net/dev > /netdev && hostname > /hostname");
    sb.run(&req).unwrap();
    let netdev = fs::read_to_string(req.upper.join("netdev")).unwrap();
    let interfaces: Vec<&str> = netdev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"], "{netdev}");
    assert_eq!(
        fs::read_to_string(req.upper.join("hostname")).unwrap(),
        "localhost\n"
    );
}

#[test]
fn the_store_is_visible_read_only_and_its_mount_points_go_away() {
    let mut sb = Sandbox::busybox();
    let store = sb.path("store/nix/store");
    let pkg = store.join("00000000000000000000000000000000-hello");
    fs::create_dir_all(pkg.join("bin")).unwrap();
    fs::write(pkg.join("bin/hello"), b"hello from the store\n").unwrap();
    let mut req = sb.request(
        "cat /nix/store/00000000000000000000000000000000-hello/bin/hello > /seen
         if touch /nix/store/00000000000000000000000000000000-hello/new 2>/dev/null; then exit 10; fi
         if mkdir /nix/store/x 2>/dev/null; then exit 11; fi",
    );
    req.store = Some(store.clone());
    sb.run(&req).unwrap();
    assert_eq!(
        fs::read_to_string(req.upper.join("seen")).unwrap(),
        "hello from the store\n"
    );
    assert_eq!(
        names(&capture(&req.upper)),
        ["./", "./seen", "./tmp/"],
        "nix and nix/store were made for the run only"
    );
    assert_eq!(fs::read_dir(&store).unwrap().count(), 1);
}

#[test]
fn a_store_shell_runs_the_script_and_joins_the_path() {
    let mut sb = Sandbox::new();
    let tar = busybox_tar(false).write(&sb.path("base.tar"));
    sb.add_layer(&tar);

    let req = sb.request("true");
    let err = sb.run(&req).unwrap_err();
    assert!(matches!(err, Error::NoShell), "{err:?}");
    assert_eq!(
        err.to_string(),
        "The image has no /bin/sh to run the script with"
    );

    let mut req = sb.request("true");
    req.shell = Some("/bin/bash".to_owned());
    let err = sb.run(&req).unwrap_err();
    assert!(
        matches!(&err, Error::ShellNotFound { shell } if shell == "/bin/bash"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "The shell /bin/bash is neither in the image nor in the store"
    );

    let mut req = sb.request("echo \"$PATH\" > /path");
    req.shell = Some("/bin/ash".to_owned());
    sb.run(&req).unwrap();
    assert_eq!(
        fs::read_to_string(req.upper.join("path")).unwrap(),
        "/bin:/usr/bin:/sbin:/usr/sbin\n"
    );

    let store = sb.path("store");
    let bin = store.join("11111111111111111111111111111111-busybox/bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", bin.join("sh")).unwrap();
    let mut req = sb.request("echo \"$PATH $HOME $TZ $LC_ALL $(umask)\" > /env");
    req.store = Some(store);
    req.shell = Some("/nix/store/11111111111111111111111111111111-busybox/bin/sh".to_owned());
    sb.run(&req).unwrap();
    assert_eq!(
        fs::read_to_string(req.upper.join("env")).unwrap(),
        "/bin:/usr/bin:/sbin:/usr/sbin:/nix/store/11111111111111111111111111111111-busybox/bin /root UTC C 0022\n"
    );
}

#[test]
fn without_base_layers_the_upper_folder_is_bound() {
    let mut sb = Sandbox::new();
    let req = sb.request("true");
    let bin = req.upper.join("bin");
    fs::create_dir(&bin).unwrap();
    fs::write(bin.join("busybox"), busybox()).unwrap();
    fs::set_permissions(bin.join("busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("busybox", bin.join("sh")).unwrap();
    let req = RootRun {
        script: "/bin/busybox mkdir /made && /bin/busybox rm /bin/sh".to_owned(),
        ..req
    };
    sb.run(&req).unwrap();
    assert!(req.upper.join("made").is_dir());
    assert!(!req.upper.join("bin/sh").exists());
    assert_eq!(
        names(&capture(&req.upper)),
        ["./", "./bin/", "./bin/busybox", "./made/", "./tmp/"]
    );
}

/// Whether a process whose command line holds `marker` is alive.
fn running(marker: &str) -> bool {
    fs::read_dir("/proc").unwrap().flatten().any(|p| {
        fs::read(p.path().join("cmdline"))
            .is_ok_and(|c| c.windows(marker.len()).any(|w| w == marker.as_bytes()))
    })
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A script that marks its start and then hangs in a process that carries `marker`.
fn hanging(marker: &str) -> String {
    format!("touch /started; sh -c 'while true; do sleep 1; done' {marker}")
}

#[test]
fn sigterm_to_the_caller_kills_the_sandbox_and_unmounts_everything() {
    let mut sb = Sandbox::busybox();
    let marker = format!("hang-{}", std::process::id());
    let req = sb.request(&hanging(&marker));
    let spec = sb.path("req.json");
    fs::write(&spec, serde_json::to_vec(&req).unwrap()).unwrap();
    let mut caller = Command::new(BIN)
        .arg("run")
        .arg(&spec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the script to start", || req.upper.join("started").exists());
    assert!(running(&marker));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(caller.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    caller.wait().unwrap();
    wait_for("the sandbox to end", || !running(&marker));
    wait_for("the mounts to go", || {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .all(|l| !l.contains(sb.dir.path().to_str().unwrap()))
    });
    // The caller was killed outright: its scratch folder is left to whoever owns `work`.
}

#[test]
fn a_stop_request_tears_the_sandbox_down() {
    let mut sb = Sandbox::busybox();
    let marker = format!("stop-{}", std::process::id());
    let req = sb.request(&hanging(&marker));
    let stop = Cancel::new();
    let result = std::thread::scope(|s| {
        let run = s.spawn(|| run_as_root(&req, Path::new(BIN), &stop));
        wait_for("the script to start", || req.upper.join("started").exists());
        stop.cancel();
        run.join().unwrap()
    });
    assert!(matches!(result, Err(Error::Interrupted(_))), "{result:?}");
    assert!(!running(&marker), "the script survived");
    sb.assert_clean(&req.work);
}

// ---- extraction ----

fn extract_err(tar: &Path, dest: &Path) -> String {
    let err = extract_layer(tar, dest).unwrap_err();
    assert!(matches!(err, Error::Hostile { .. }), "{err:?}");
    err.to_string()
}

#[test]
fn hostile_tars_write_nothing_outside_the_destination() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("target"), b"keep").unwrap();
    let dest = dir.path().join("deep/er/dest");
    let out = outside.to_str().unwrap();
    let passwd_links = fs::metadata("/etc/passwd").unwrap().nlink();

    let tar = TarFile::new()
        .file("../../escape", 0o644, b"x")
        .write(&dir.path().join("dotdot.tar"));
    assert!(extract_err(&tar, &dest).contains("`..`"));
    assert!(!dir.path().join("deep/escape").exists());

    let abs = format!("{out}/abs");
    let tar = TarFile::new()
        .file(&abs, 0o644, b"x")
        .write(&dir.path().join("abs.tar"));
    extract_layer(&tar, &dest).unwrap();
    assert!(!outside.join("abs").exists());
    assert!(dest.join(abs.trim_start_matches('/')).is_file());

    let tar = TarFile::new()
        .symlink("link", out)
        .file("link/pwned", 0o644, b"x")
        .write(&dir.path().join("through.tar"));
    assert!(extract_err(&tar, &dest).contains("symlink `link`"));
    assert!(!outside.join("pwned").exists());

    let tar = TarFile::new()
        .symlink("up", "../../..")
        .dir("up/", 0o755)
        .file("up/escape", 0o644, b"x")
        .write(&dir.path().join("relink.tar"));
    extract_layer(&tar, &dest).unwrap();
    assert!(
        dest.join("up").is_dir(),
        "the symlink was replaced, not followed"
    );
    assert!(!dir.path().join("escape").exists());

    let tar = TarFile::new()
        .hardlink("passwd", "/etc/passwd")
        .write(&dir.path().join("hard.tar"));
    assert!(extract_err(&tar, &dest).contains("not in the layer"));
    assert!(!dest.join("passwd").exists());

    let tar = TarFile::new()
        .symlink("o", out)
        .hardlink("t", "o/target")
        .write(&dir.path().join("hardsym.tar"));
    assert!(extract_err(&tar, &dest).contains("symlink `o`"));
    assert!(!dest.join("t").exists());

    let tar = TarFile::new()
        .symlink("s", &format!("{out}/target"))
        .file("s", 0o600, b"replaced")
        .write(&dir.path().join("over.tar"));
    extract_layer(&tar, &dest).unwrap();
    assert_eq!(fs::read(outside.join("target")).unwrap(), b"keep");
    assert_eq!(fs::read(dest.join("s")).unwrap(), b"replaced");

    let tar = TarFile::new()
        .file("sub/.wh...", 0o644, b"")
        .write(&dir.path().join("whiteout-up.tar"));
    assert!(extract_err(&tar, &dest).contains("whiteout"));
    assert_eq!(xattr::get(&dest, "trusted.overlay.opaque").unwrap(), None);

    assert_eq!(fs::metadata("/etc/passwd").unwrap().nlink(), passwd_links);
    let outside_now: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside_now, ["target"]);
    let dir_now: Vec<_> = {
        let mut v: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| Path::new(n).extension().is_none_or(|e| e != "tar"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(dir_now, ["deep", "outside"]);
}

#[test]
fn extraction_keeps_metadata_and_converts_whiteouts() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut tar = TarFile::new();
    tar.dir("./", 0o755)
        .raw("./ro/", tar::EntryType::Directory, 0o555, (0, 0), None, b"")
        .file("./ro/inside", 0o444, b"in a read-only folder")
        .raw(
            "./suid",
            tar::EntryType::Regular,
            0o4755,
            (1000, 1001),
            None,
            b"#!/bin/sh\n",
        )
        .hardlink("./suid-again", "./suid")
        .raw("./null", tar::EntryType::Char, 0o666, (0, 0), None, b"")
        .file("./.wh.gone", 0o644, b"")
        .dir("./opq/", 0o755)
        .file("./opq/.wh..wh..opq", 0o644, b"")
        .file("./.wh..wh..plnk", 0o644, b"");
    let mut bytes = Vec::new();
    {
        // A device number for `./null` (1, 3) needs a header the helper above cannot
        // express: patch it in.
        let builder = std::mem::replace(&mut tar.builder, tar::Builder::new(Vec::new()));
        let raw = builder.into_inner().unwrap();
        let mut archive = tar::Archive::new(raw.as_slice());
        let mut out = tar::Builder::new(&mut bytes);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut header = entry.header().clone();
            if entry.path_bytes().as_ref() == b"./null" {
                header.set_device_major(1).unwrap();
                header.set_device_minor(3).unwrap();
                header.set_cksum();
            }
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            out.append(&header, data.as_slice()).unwrap();
        }
        out.finish().unwrap();
    }
    let tar_path = dir.path().join("meta.tar");
    fs::File::create(&tar_path)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    let dest = dir.path().join("dest");
    extract_layer(&tar_path, &dest).unwrap();

    let md = fs::metadata(dest.join("ro")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o555);
    assert_eq!(
        fs::read(dest.join("ro/inside")).unwrap(),
        b"in a read-only folder"
    );
    let md = fs::metadata(dest.join("suid")).unwrap();
    assert_eq!(
        (md.mode() & 0o7777, md.uid(), md.gid(), md.mtime()),
        (0o4755, 1000, 1001, 315_532_800)
    );
    assert_eq!(
        fs::metadata(dest.join("suid-again")).unwrap().ino(),
        md.ino()
    );
    let null = fs::symlink_metadata(dest.join("null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    let gone = fs::symlink_metadata(dest.join("gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    assert!(!dest.join(".wh.gone").exists());
    assert_eq!(
        xattr::get(dest.join("opq"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert!(!dest.join("opq/.wh..wh..opq").exists());
    assert!(!dest.join(".wh..wh..plnk").exists());
    assert!(!dest.join("..wh..plnk").exists());
}

// ---- fake root ----

/// A folder holding the busybox image's files, for a fake root's script.
fn fake_root_folder(sb: &Sandbox) -> PathBuf {
    let tar = busybox_tar(true).write(&sb.path("fake.tar"));
    let dir = sb.path("fake");
    extract_layer(&tar, &dir).unwrap();
    dir
}

fn fake_root(sb: &Sandbox, dir: &Path, script: &str, chroot: bool) -> Result<Tree, Error> {
    let req = FakeRoot {
        dir: dir.to_owned(),
        work: sb.path("work"),
        script: script.to_owned(),
        chroot,
        store: None,
        limits: Limits::default(),
    };
    let result = run_fake_root(&req, Path::new(BIN), &Cancel::new());
    sb.assert_clean(&req.work);
    let recordings = result?;
    Ok(Tree::from_staged(
        dir,
        &recordings,
        &FAKE_CHROOT_MOUNTS,
        &mut Warnings::default(),
    )
    .unwrap())
}

/// (name, uid, gid, mode, kind) of the entries whose names contain `part`.
fn shown(tree: &Tree, part: &str) -> Vec<(String, u64, u64, u32, EntryKind)> {
    tree.entries(&Owner::root(), 0)
        .into_iter()
        .filter(|e| String::from_utf8_lossy(&e.name).contains(part))
        .map(|e| {
            let kind = match e.kind {
                EntryKind::File { .. } => EntryKind::Data(Vec::new()),
                other => other,
            };
            (
                String::from_utf8_lossy(&e.name).into_owned(),
                e.owner.uid,
                e.owner.gid,
                e.mode,
                kind,
            )
        })
        .collect()
}

const FAKE_ROOT_SCRIPT: &str = "mkdir -p data && touch data/owned data/suid \
    && chown 1000:100 data/owned && chown 7 data && chmod 4755 data/suid \
    && mknod data/null c 1 3 && mknod data/disk b 8 0 && chmod 600 data/disk \
    && mkfifo data/fifo && ln data/owned data/hardlink";

#[test]
fn a_fake_root_records_owners_and_devices_it_cannot_make() {
    let sb = Sandbox::new();
    let dir = fake_root_folder(&sb);
    let tree = fake_root(&sb, &dir, FAKE_ROOT_SCRIPT, false).unwrap();
    assert_eq!(
        shown(&tree, "data"),
        [
            ("./data/".to_owned(), 7, 0, 0o755, EntryKind::Directory),
            (
                "./data/disk".to_owned(),
                0,
                0,
                0o600,
                EntryKind::BlockDevice { major: 8, minor: 0 }
            ),
            ("./data/fifo".to_owned(), 0, 0, 0o644, EntryKind::Fifo),
            (
                "./data/hardlink".to_owned(),
                1000,
                100,
                0o644,
                EntryKind::Data(Vec::new())
            ),
            (
                "./data/null".to_owned(),
                0,
                0,
                0o644,
                EntryKind::CharDevice { major: 1, minor: 3 }
            ),
            (
                "./data/owned".to_owned(),
                1000,
                100,
                0o644,
                EntryKind::Data(Vec::new())
            ),
            (
                "./data/suid".to_owned(),
                0,
                0,
                0o4755,
                EntryKind::Data(Vec::new())
            ),
        ]
    );
    // Nothing was given away on disk: the caller owns what the script made.
    let md = fs::metadata(dir.join("data/owned")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
    assert!(fs::metadata(dir.join("data/null")).unwrap().is_file());
}

#[test]
fn a_chrooted_fake_root_runs_the_image_s_programs_and_leaves_no_mount_points() {
    let sb = Sandbox::new();
    let dir = fake_root_folder(&sb);
    // The image's own busybox, by its absolute path, in the image's root.
    let script = format!(
        "/bin/busybox test -e /etc/motd && cd / && {FAKE_ROOT_SCRIPT} && echo chrooted > /marker"
    );
    let tree = fake_root(&sb, &dir, &script, true).unwrap();
    assert_eq!(
        shown(&tree, "data/null")[0].4,
        EntryKind::CharDevice { major: 1, minor: 3 }
    );
    assert_eq!(shown(&tree, "data/owned")[0].1, 1000);
    assert_eq!(
        fs::read_to_string(dir.join("marker")).unwrap(),
        "chrooted\n"
    );
    for gone in ["dev", "proc", "sys"] {
        assert!(!dir.join(gone).exists(), "/{gone} was left in the folder");
    }
}

#[test]
fn a_failing_fake_root_script_reports_its_status() {
    let sb = Sandbox::new();
    let dir = fake_root_folder(&sb);
    let err = fake_root(&sb, &dir, "chown 5 /nonexistent-file-of-the-test", false).unwrap_err();
    assert!(
        matches!(err, Error::ScriptFailed { status: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn thousands_of_records_reach_the_caller() {
    // More records than a pipe holds: the report must still get through.
    let sb = Sandbox::new();
    let dir = fake_root_folder(&sb);
    let script = "mkdir many && cd many && i=0; while [ $i -lt 3000 ]; do \
                  touch f$i && chown 1000:100 f$i; i=$((i+1)); done";
    let tree = fake_root(&sb, &dir, script, false).unwrap();
    let given = shown(&tree, "many/f")
        .into_iter()
        .filter(|(_, uid, gid, _, _)| (*uid, *gid) == (1000, 100))
        .count();
    assert_eq!(given, 3000);
}

#[test]
fn a_record_goes_with_the_last_name_of_its_object() {
    // Deleting frees the inode number for the next file: it must not inherit the owner or
    // the device that the deleted object had. Links and renames keep what they carry.
    let sb = Sandbox::new();
    let dir = fake_root_folder(&sb);
    let script = "mkdir data && cd data \
        && mknod dev c 1 3 && rm dev && echo plain > plain \
        && touch gone && chown 1000 gone && rm gone && mkdir fresh \
        && touch kept && chown 2000 kept && ln kept link && rm kept \
        && touch moved && chown 3000 moved && mv moved renamed \
        && touch replaced && chown 4000 replaced && touch over && mv over replaced";
    let tree = fake_root(&sb, &dir, script, false).unwrap();
    let owner_and_kind = |name: &str| {
        let (_, uid, _, _, kind) = shown(&tree, &format!("data/{name}"))
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no data/{name}"));
        (uid, kind)
    };
    assert_eq!(owner_and_kind("plain"), (0, EntryKind::Data(Vec::new())));
    assert_eq!(owner_and_kind("fresh/"), (0, EntryKind::Directory));
    assert_eq!(owner_and_kind("link"), (2000, EntryKind::Data(Vec::new())));
    assert_eq!(
        owner_and_kind("renamed"),
        (3000, EntryKind::Data(Vec::new()))
    );
    assert_eq!(owner_and_kind("replaced"), (0, EntryKind::Data(Vec::new())));
}

#[test]
fn a_stop_request_ends_a_chrooted_fake_root_at_once() {
    let sb = Sandbox::new();
    let dir = fake_root_folder(&sb);
    let marker = format!("fake-stop-{}", std::process::id());
    let req = FakeRoot {
        dir: dir.clone(),
        work: sb.path("work"),
        script: hanging(&marker),
        chroot: true,
        store: None,
        limits: Limits::default(),
    };
    let stop = Cancel::new();
    let (result, took) = std::thread::scope(|s| {
        let run = s.spawn(|| run_fake_root(&req, Path::new(BIN), &stop));
        wait_for("the script to start", || dir.join("started").exists());
        let asked = Instant::now();
        stop.cancel();
        (run.join().unwrap(), asked.elapsed())
    });
    assert!(matches!(result, Err(Error::Interrupted(_))), "{result:?}");
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    assert!(!running(&marker), "the script survived");
    sb.assert_clean(&req.work);
    for gone in ["dev", "proc", "sys"] {
        assert!(!dir.join(gone).exists(), "/{gone} was left in the folder");
    }
}

/// A GNU sparse member (type `S`) reads as its whole length, holes as zeros: 1 GiB here,
/// stored in 512 bytes. Extracted for `runAsRoot`, its holes stay holes, so a small layer
/// of such members cannot fill `TMPDIR`.
#[test]
fn gnu_sparse_member_is_extracted_with_its_holes_as_holes() {
    const REAL: u64 = 1 << 30;
    const AT: u64 = 512 << 20;
    let octal = |field: &mut [u8; 12], value: u64| {
        field.copy_from_slice(format!("{value:011o}\0").as_bytes());
    };
    let mut header = tar::Header::new_gnu();
    header.set_path("sparse").unwrap();
    header.set_entry_type(tar::EntryType::GNUSparse);
    header.set_size(512);
    header.set_mode(0o644);
    header.set_mtime(1);
    let gnu = header.as_gnu_mut().unwrap();
    octal(&mut gnu.sparse[0].offset, AT);
    octal(&mut gnu.sparse[0].numbytes, 512);
    octal(&mut gnu.realsize, REAL);
    header.set_cksum();
    let mut data = [0u8; 512];
    data[..6].copy_from_slice(b"hello\n");
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(&data);
    bytes.extend_from_slice(&[0u8; 1024]);

    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("sparse.tar");
    fs::write(&tar, &bytes).unwrap();
    let dest = dir.path().join("dest");
    extract_layer(&tar, &dest).unwrap();
    let file = dest.join("sparse");
    let meta = fs::metadata(&file).unwrap();
    assert_eq!(meta.len(), REAL);
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "{} blocks of 512 bytes for 512 bytes of data",
        meta.blocks()
    );
    let mut f = fs::File::open(&file).unwrap();
    let mut head = [0u8; 6];
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(AT)).unwrap();
    std::io::Read::read_exact(&mut f, &mut head).unwrap();
    assert_eq!(&head, b"hello\n");
}
