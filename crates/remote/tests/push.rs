//! Pushes to a real registry: the harness's private `docker-registry` (distribution 2.8)
//! from `buildimage-test-support`, reached directly, through its [`FaultProxy`], or over
//! TLS, and checked with skopeo.

use std::fmt::Write as _;
use std::io::Write;
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use buildimage_archive::{Blob, BlobStore};
use buildimage_layer::Cancel;
use buildimage_remote::registry::{Registry, RegistryOptions, Target};
use buildimage_test_support::{
    FaultProxy, Outcome, Registry as Server, RegistryConfig, Rule, run_ok, sha256_hex,
};

/// No TLS verification, and no auth file of the machine's user: for plain-HTTP servers.
fn insecure() -> RegistryOptions {
    RegistryOptions {
        tls_verify: false,
        authfile: Some(empty_authfile()),
        ..RegistryOptions::default()
    }
}

/// `insecure()` with the credentials `USER:PASSWORD` (or just `USER`).
fn with_creds(creds: &str) -> RegistryOptions {
    RegistryOptions {
        creds: Some(creds.to_owned()),
        ..insecure()
    }
}

/// An auth file with no entries, shared by the tests of this process.
fn empty_authfile() -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("buildimage-empty-auth-{}.json", std::process::id()));
    std::fs::write(&path, "{}").unwrap();
    path
}

/// The client for `reference`, or a panic with the error.
fn connect(reference: &str, options: &RegistryOptions) -> Registry {
    Registry::connect(&Target::parse(reference).unwrap(), options)
        .unwrap_or_else(|error| panic!("connecting to {reference}: {error:#?}"))
}

/// Why connecting to `reference` failed, with every source; panics if it did not.
fn refused(reference: &str, options: &RegistryOptions) -> String {
    match Registry::connect(&Target::parse(reference).unwrap(), options) {
        Ok(registry) => panic!("connecting to {reference} succeeded: {registry:?}"),
        Err(error) => error_chain(&error),
    }
}

/// `error` and its sources, joined by `: `.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        write!(text, ": {inner}").unwrap();
        cause = inner.source();
    }
    text
}

/// `count` bytes that do not compress, the same for the same `seed`.
fn noise(seed: u64, count: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// `sha256:HEX` of `bytes`.
fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// Writes `bytes` through `start_blob` in uneven pieces; whether they were sent.
fn stream_blob(registry: &mut Registry, bytes: &[u8]) -> bool {
    let mut writer = registry.start_blob().unwrap();
    for piece in bytes.chunks(1_000_003) {
        writer.write_all(piece).unwrap();
    }
    writer.commit(&digest(bytes), bytes.len() as u64).unwrap()
}

/// An OCI image made of a config and layers of arbitrary bytes (the registry does not
/// look inside them).
struct Image {
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
}

impl Image {
    /// A config and two layers, the first larger than a chunk.
    fn new() -> Image {
        Image {
            config:
                br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                    .to_vec(),
            // The first is larger than a chunk: it goes as PATCH requests and a PUT.
            layers: vec![noise(1, (9 << 20) + 12345), noise(2, 4321)],
        }
    }

    /// A config `config` and one small layer of `noise(seed, size)`.
    fn small(config: &[u8], seed: u64, size: usize) -> Image {
        Image {
            config: config.to_vec(),
            layers: vec![noise(seed, size)],
        }
    }

    /// The OCI manifest: its descriptor and its bytes.
    fn manifest(&self) -> (Blob, Vec<u8>) {
        let descriptor = |media: &str, bytes: &[u8]| {
            format!(
                r#"{{"mediaType":"{media}","digest":"{}","size":{}}}"#,
                digest(bytes),
                bytes.len()
            )
        };
        let layers: Vec<String> = self
            .layers
            .iter()
            .map(|l| descriptor("application/vnd.oci.image.layer.v1.tar+gzip", l))
            .collect();
        let text = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
            descriptor("application/vnd.oci.image.config.v1+json", &self.config),
            layers.join(",")
        );
        let bytes = text.into_bytes();
        let blob = Blob {
            digest: digest(&bytes),
            size: bytes.len() as u64,
            media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
        };
        (blob, bytes)
    }

    /// Pushes the image; how many blobs were sent.
    fn push(&self, registry: &mut Registry, tag: &str) -> usize {
        let mut sent = usize::from(
            registry
                .put_blob(&digest(&self.config), &self.config)
                .unwrap(),
        );
        for layer in &self.layers {
            // As `BlobImage` does for a layer its cache knows: asked first, then streamed.
            if !registry
                .has_blob(&digest(layer), layer.len() as u64, &[])
                .unwrap()
            {
                sent += usize::from(stream_blob(registry, layer));
            }
        }
        let (manifest, bytes) = self.manifest();
        registry.put_manifest(&manifest, &bytes, tag).unwrap();
        sent
    }

    /// Checks that `inspected` (`skopeo inspect` of a pushed tag) is this image.
    fn assert_is(&self, inspected: &serde_json::Value) {
        let layers: Vec<String> = self.layers.iter().map(|l| digest(l)).collect();
        assert_eq!(
            inspected["Layers"],
            serde_json::json!(layers),
            "{inspected}"
        );
        assert_eq!(
            inspected["Digest"],
            serde_json::json!(self.manifest().0.digest),
            "{inspected}"
        );
    }
}

#[test]
fn push_chunked_and_monolithic_then_skip_and_mount() {
    let server = Server::start(RegistryConfig::plain());
    let image = Image::new();
    let mut registry = connect(&format!("{}/app:v1", server.url()), &insecure());
    assert_eq!(registry.location(), Some(format!("{}/app", server.url())));
    assert_eq!(image.push(&mut registry, "ignored"), 3);
    image.assert_is(&server.inspect("app", "v1"));

    // Pushed again: every blob is there already.
    for layer in &image.layers {
        assert!(
            registry
                .has_blob(&digest(layer), layer.len() as u64, &[])
                .unwrap()
        );
    }
    assert_eq!(image.push(&mut registry, "ignored"), 0);
    // A blob of one chunk is looked for before it is sent, at commit.
    assert!(!stream_blob(&mut registry, &image.layers[1]));
    // The size must match too.
    let big = &image.layers[0];
    assert!(!registry.has_blob(&digest(big), 1, &[]).unwrap());
    assert_eq!(server.blob_uploads("app"), 3);

    // Into another repository: mounted from where the cache saw it.
    let mut other = connect(&format!("{}/team/other", server.url()), &insecure());
    let seen_in = vec![
        "elsewhere.io/app".to_owned(),
        format!("{}/app", server.url()),
    ];
    assert!(!other.has_blob(&digest(big), big.len() as u64, &[]).unwrap());
    assert!(
        other
            .has_blob(&digest(big), big.len() as u64, &seen_in)
            .unwrap()
    );
    assert!(other.has_blob(&digest(big), big.len() as u64, &[]).unwrap());
    assert_eq!(server.mounts("team/other"), 1);
    // A blob the source does not have is not mounted (the session opened is deleted).
    let absent = noise(3, 100);
    assert!(!other.has_blob(&digest(&absent), 100, &seen_in).unwrap());
    // The tag argument names the manifest when the reference has none.
    assert_eq!(image.push(&mut other, "from-arg"), 2);
    image.assert_is(&server.inspect("team/other", "from-arg"));
}

#[test]
fn wrong_digest_names_the_blob() {
    let server = Server::start(RegistryConfig::plain());
    let mut registry = connect(&format!("{}/app:v1", server.url()), &insecure());
    let bytes = noise(4, 1000);
    let wrong = digest(b"something else");
    let mut writer = registry.start_blob().unwrap();
    writer.write_all(&bytes).unwrap();
    let error = writer.commit(&wrong, 1000).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!(
            "Registry {}, repository app: uploading blob {wrong}: PUT answered 400 Bad Request (DIGEST_INVALID",
            server.url()
        )),
        "{error}"
    );

    // Abandoned writers leave nothing behind, and the registry goes on.
    let mut writer = registry.start_blob().unwrap();
    writer.write_all(&noise(5, 9 << 20)).unwrap();
    drop(writer);
    assert!(registry.put_blob(&digest(&bytes), &bytes).unwrap());
}

#[test]
fn basic_auth_right_and_wrong_password() {
    let server = Server::start(RegistryConfig::plain().with_htpasswd("user", "pass"));
    let reference = format!("{}/app:v1", server.url());

    let mut registry = connect(&reference, &with_creds("user:pass"));
    let image = Image::small(b"{}", 6, 2000);
    assert_eq!(image.push(&mut registry, "x"), 2);
    image.assert_is(&server.inspect("app", "v1"));

    let error = refused(&reference, &with_creds("user:wrong"));
    assert!(error.contains("401 Unauthorized"), "{error}");
    assert!(
        error.contains("authentication failed (wrong user or password?)"),
        "{error}"
    );
    let error = refused(&reference, &insecure());
    assert!(error.contains("authentication required"), "{error}");
    let error = refused(&reference, &with_creds("user"));
    assert!(error.contains("have no password"), "{error}");
}

#[test]
fn token_auth_right_and_wrong_password() {
    let server = Server::start(RegistryConfig::plain().with_token("bob", "pw"));
    let reference = format!("{}/app:v1", server.url());

    let mut registry = connect(&reference, &with_creds("bob:pw"));
    let image = Image::small(b"{\"token\":true}", 9, 3000);
    assert_eq!(image.push(&mut registry, "x"), 2);
    // Tokens are kept per scope, not fetched for every request.
    let fetched = server.token_requests();
    assert!(fetched >= 1, "{fetched}");
    assert!(fetched < 5, "{fetched} token requests for one push");
    image.assert_is(&server.inspect("app", "v1"));

    let error = refused(&reference, &with_creds("bob:wrong"));
    assert!(error.contains("getting a token from"), "{error}");
    assert!(error.contains("401 Unauthorized"), "{error}");
    assert!(
        error.contains("authentication failed (wrong user or password?)"),
        "{error}"
    );
    let error = refused(&reference, &insecure());
    assert!(error.contains("authentication required"), "{error}");
}

#[test]
fn server_errors_are_retried() {
    let server = Server::start(RegistryConfig::plain());
    let proxy = FaultProxy::start(&server);
    proxy.fail_next(2, 500);
    let mut registry = connect(&format!("{}/app:v1", proxy.url()), &insecure());
    let failed = proxy
        .requests()
        .iter()
        .filter(|request| request.outcome == Outcome::Answered(500))
        .count();
    assert_eq!(failed, 2, "{:?}", proxy.requests());
    let image = Image::small(b"{\"a\":1}", 7, 3000);
    assert_eq!(image.push(&mut registry, "x"), 2);
    image.assert_is(&server.inspect("app", "v1"));
}

#[test]
fn connection_refused_names_the_url() {
    // A registry that is down: its port is closed.
    let mut server = Server::start(RegistryConfig::plain());
    server.stop();
    let error = refused(&format!("{}/app", server.url()), &insecure());
    assert!(
        error.contains(&format!("GET http://{}/v2/ failed", server.url())),
        "{error}"
    );
    assert!(error.to_lowercase().contains("refused"), "{error}");
}

/// A relay from a free port of `ip` to `port` of 127.0.0.1, which copies bytes both ways
/// (TLS included) and never looks at them: the same server under an address its
/// certificate does not name. It runs until the test process ends.
fn relay(ip: Ipv4Addr, port: u16) -> String {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
            }
        }
    });
    address.to_string()
}

#[test]
fn tls_push_trusts_a_self_signed_ca_certificate_of_the_cert_dir() {
    let server = Server::start(RegistryConfig::plain().with_tls());
    let trusted = server.cert_dir();
    // What the product must cope with: a self-signed certificate that says it is a CA,
    // as `openssl req -x509` makes them, used as the server's own.
    let constraints = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-ext", "basicConstraints", "-in"])
            .arg(trusted.join("ca.crt")),
    );
    let constraints = String::from_utf8_lossy(&constraints.stdout);
    assert!(constraints.contains("CA:TRUE"), "{constraints}");

    let verified = |cert_dir: Option<PathBuf>| RegistryOptions {
        tls_verify: true,
        cert_dir,
        authfile: Some(empty_authfile()),
        ..RegistryOptions::default()
    };
    let reference = format!("{}/app:v1", server.url());

    let mut registry = connect(&reference, &verified(Some(trusted.clone())));
    let described = format!("{registry:?}");
    assert!(
        described.contains(&format!("https://{}", server.url())),
        "{described}"
    );
    let image = Image::small(b"{\"tls\":true}", 8, 5000);
    assert_eq!(image.push(&mut registry, "x"), 2);
    image.assert_is(&server.inspect("app", "v1"));

    // Pinned, the certificate must still name the host. It names 127.0.0.1 and
    // localhost, not 127.0.0.2.
    connect(
        &format!("localhost:{}/app:v1", server.port()),
        &verified(Some(trusted.clone())),
    );
    let elsewhere = relay(Ipv4Addr::new(127, 0, 0, 2), server.port());
    let error = refused(&format!("{elsewhere}/app:v1"), &verified(Some(trusted)));
    assert!(error.contains("not valid for name"), "{error}");

    // Another self-signed certificate for the same names does not vouch for it, nor do
    // Mozilla's roots; a refused certificate is not retried.
    let other = Server::start(RegistryConfig::plain().with_tls());
    for options in [verified(Some(other.cert_dir())), verified(None)] {
        let error = refused(&reference, &options);
        assert!(
            error.contains(&format!(
                "GET https://{}/v2/ failed (the registry's certificate is not trusted",
                server.url()
            )),
            "{error}"
        );
        assert!(error.contains("invalid peer certificate"), "{error}");
    }
}

/// How long a cancelled push may take to return: the product asks for a stop within a
/// couple of seconds of SIGINT.
const PROMPT: Duration = Duration::from_secs(2);

/// Runs `work` on a thread, sets `cancel` once `ready()` says the request is where the test
/// wants it (polled; a busy machine may take long to get there), and returns what `work`
/// returned once it did, failing if that took longer than [`PROMPT`] after the cancel.
fn cancel_when<T: Send + 'static>(
    cancel: &Cancel,
    ready: impl Fn() -> bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(work());
    });
    let waiting = Instant::now();
    while !ready() {
        assert!(
            receiver.try_recv().is_err(),
            "the request ended before it was cancelled"
        );
        assert!(
            waiting.elapsed() < Duration::from_mins(2),
            "the request never got where the test cancels it"
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        receiver.try_recv().is_err(),
        "the request ended before it was cancelled"
    );
    cancel.cancel();
    let cancelled = Instant::now();
    let result = receiver
        .recv_timeout(PROMPT)
        .unwrap_or_else(|_| panic!("still running {PROMPT:?} after the cancel"));
    assert!(cancelled.elapsed() < PROMPT, "{:?}", cancelled.elapsed());
    result
}

/// A `ready` for [`cancel_when`] that turns true 300 ms after it is made: for a server that
/// never answers, where nothing shows that the request arrived.
fn after_300_ms() -> impl Fn() -> bool {
    let start = Instant::now();
    move || start.elapsed() >= Duration::from_millis(300)
}

/// Whether `error` is the interruption the CLI reports as such.
fn is_interrupted(error: &buildimage_archive::Error) -> bool {
    matches!(
        error,
        buildimage_archive::Error::Layer(buildimage_layer::Error::Interrupted(_))
    )
}

#[test]
fn push_held_by_the_registry_stops_when_cancelled() {
    let server = Server::start(RegistryConfig::plain());
    // HEAD of the blob: waiting for an answer. PUT of a blob larger than the socket
    // buffers: waiting for the registry to take the body (the proxy reads no further
    // than the head of a request it holds).
    let cases = [
        ("HEAD", "/blobs/sha256:", noise(11, 1000)),
        ("PUT", "/blobs/uploads/", noise(12, 64 << 20)),
    ];
    for (method, part, blob) in cases {
        let proxy = FaultProxy::start(&server);
        proxy.add_rule(Rule::hold().method(method).uri_contains(part));
        let cancel = Cancel::new();
        let options = RegistryOptions {
            cancel: cancel.clone(),
            ..insecure()
        };
        let mut registry =
            connect(&format!("{}/app:v1", proxy.url()), &options).with_chunk_size(blob.len());
        let result = cancel_when(
            &cancel,
            || proxy.held() == 1,
            move || registry.put_blob(&digest(&blob), &blob).map(|_| ()),
        );
        let error = result.unwrap_err();
        assert!(is_interrupted(&error), "{method}: {error:?}");
        assert_eq!(proxy.held(), 1, "{method}");
        // Not sent again after the interruption.
        let sent = proxy
            .requests()
            .iter()
            .filter(|request| request.method == method)
            .count();
        assert_eq!(sent, 1, "{method}: {:?}", proxy.requests());
    }
}

#[test]
fn connect_to_a_silent_registry_stops_when_cancelled() {
    // Accepts connections and never says a word: the TLS handshake waits for the
    // server's hello, through ureq's rustls connector and through the pinning one.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut open = Vec::new();
        for client in listener.incoming() {
            open.extend(client.ok());
        }
    });
    // Any certificate for 127.0.0.1 to pin: a TLS registry's.
    let tls = Server::start(RegistryConfig::plain().with_tls());
    let variants = [
        ("insecure", insecure()),
        (
            "verified",
            RegistryOptions {
                tls_verify: true,
                ..insecure()
            },
        ),
        (
            "pinned",
            RegistryOptions {
                tls_verify: true,
                cert_dir: Some(tls.cert_dir()),
                ..insecure()
            },
        ),
    ];
    for (name, options) in variants {
        let cancel = Cancel::new();
        let options = RegistryOptions {
            cancel: cancel.clone(),
            ..options
        };
        let target = Target::parse(&format!("127.0.0.1:{port}/app")).unwrap();
        let result = cancel_when(&cancel, after_300_ms(), move || {
            Registry::connect(&target, &options).map(|_| ())
        });
        let error = result.unwrap_err();
        assert!(is_interrupted(&error), "{name}: {error:?}");
    }
}
