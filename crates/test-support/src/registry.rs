//! A private container registry for the end-to-end tests of a push: CNCF distribution 2.8
//! (Debian's `docker-registry`) on a free 127.0.0.1 port, with its own storage, plain or
//! TLS, anonymous or behind htpasswd or token auth ([`Registry`]); the requests it served,
//! read back from its access log ([`LoggedRequest`]); and a proxy in front of it that fails
//! or cuts requests on demand ([`FaultProxy`]).
//!
//! Certificates are made with the `openssl` CLI (a P-256 key and a self-signed certificate
//! per use: no new dependency, and `openssl s_client` is needed anyway to talk to a TLS
//! registry without a TLS stack here); htpasswd files with `htpasswd -Bbn` (bcrypt, the
//! only hash distribution accepts); token JWTs are signed ES256 with `ring`.
//!
//! Every helper panics with a message that says what failed and how to fix it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use data_encoding::{BASE64, BASE64URL_NOPAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};

use crate::fs::{check, display, mkdir, require_tool, run_ok, write};

/// The registry's binary (Debian package `docker-registry`, distribution 2.8).
const REGISTRY_TOOL: &str = "docker-registry";

/// The `service` of a token-auth registry: the audience its tokens must name.
pub const TOKEN_SERVICE: &str = "buildimage-test-registry";

/// The `issuer` of the harness's token issuer, which a token-auth registry trusts.
pub const TOKEN_ISSUER: &str = "buildimage-test-issuer";

/// How long a token lives, in seconds (`expires_in`).
const TOKEN_LIFETIME: u64 = 300;

/// `http.secret` signs the `_state` of an upload. Without it the registry draws a new one
/// at every start, and an upload begun before [`Registry::stop`] could not be finished
/// after [`Registry::start_again`], as it can on a real registry that restarts.
const HTTP_SECRET: &str = "buildimage-test-support-fixed-secret";

/// How the URIs of the harness's own requests (readiness probes, log flushes) begin; they
/// are left out of [`Registry::requests`].
const HARNESS_URI: &str = "/v2/?harness-";

/// How long the registry may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a log flush may take to show up in the access log.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Timeout of the harness's own HTTP requests, so that a hung peer fails a test rather
/// than hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may use a [`Registry`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// Anybody, for anything.
    #[default]
    Anonymous,
    /// HTTP Basic auth with one user (`auth.htpasswd`, bcrypt).
    Htpasswd {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// Bearer tokens (`auth.token`) from the harness's own token issuer, which hands them
    /// to this one user, for whatever scope it asks.
    Token {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

/// How a [`Registry`] serves: plain HTTP or TLS, and which [`Auth`]. The two compose.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Serve HTTPS with a self-signed certificate for `127.0.0.1` and `localhost`
    /// (see [`Registry::cert_dir`]) instead of plain HTTP.
    pub tls: bool,
    /// Who may use it.
    pub auth: Auth,
}

impl RegistryConfig {
    /// Plain HTTP, anonymous: the default.
    pub fn plain() -> RegistryConfig {
        RegistryConfig::default()
    }

    /// The same, served over TLS.
    #[must_use]
    pub fn with_tls(mut self) -> RegistryConfig {
        self.tls = true;
        self
    }

    /// The same, behind htpasswd Basic auth for `user` with `password`.
    #[must_use]
    pub fn with_htpasswd(mut self, user: &str, password: &str) -> RegistryConfig {
        self.auth = Auth::Htpasswd {
            user: user.to_owned(),
            password: password.to_owned(),
        };
        self
    }

    /// The same, behind token auth; the harness's issuer gives tokens to `user` with
    /// `password`.
    #[must_use]
    pub fn with_token(mut self, user: &str, password: &str) -> RegistryConfig {
        self.auth = Auth::Token {
            user: user.to_owned(),
            password: password.to_owned(),
        };
        self
    }
}

/// One request the registry served, from its access log (Apache combined format, which
/// distribution writes to standard output for every request, auth challenges included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    /// `GET`, `HEAD`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// The request target as sent: path and query, `/v2/app/blobs/uploads/?mount=…`.
    pub uri: String,
    /// The status the registry answered.
    pub status: u16,
}

impl LoggedRequest {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.uri.split_once('?').map_or(&self.uri, |(path, _)| path)
    }

    /// The query, without `?`; empty when there is none.
    pub fn query(&self) -> &str {
        self.uri.split_once('?').map_or("", |(_, query)| query)
    }

    /// Whether the query has the parameter `name`.
    pub fn has_param(&self, name: &str) -> bool {
        self.query()
            .split('&')
            .any(|pair| pair.split_once('=').map_or(pair, |(key, _)| key) == name)
    }

    /// A line of the combined log format,
    /// `127.0.0.1 - user [date] "GET /v2/ HTTP/1.1" 200 2 "referer" "agent"`.
    fn parse(line: &str) -> Option<LoggedRequest> {
        let (_, rest) = line.split_once(" \"")?;
        let (request, rest) = rest.split_once("\" ")?;
        let mut parts = request.split(' ');
        let method = parts.next()?.to_owned();
        let uri = parts.next()?.to_owned();
        let status = rest.split(' ').next()?.parse().ok()?;
        Some(LoggedRequest {
            method,
            uri,
            status,
        })
    }
}

/// What the registry printed: the access log (standard output) and its other messages
/// (standard error, logrus text).
#[derive(Default)]
struct Log {
    access: Vec<String>,
    messages: Vec<String>,
}

/// A running registry process and the threads that read what it prints.
struct Process {
    child: Child,
    readers: Vec<JoinHandle<()>>,
}

/// A private distribution 2.8 registry, killed and its storage removed on drop.
///
/// ```no_run
/// use buildimage_test_support::{Registry, RegistryConfig};
///
/// let registry = Registry::start(RegistryConfig::plain().with_htpasswd("u", "p"));
/// // ... push `registry.docker_ref("app", "v1")` ...
/// assert_eq!(registry.blob_uploads("app"), 2);
/// let inspected = registry.inspect("app", "v1");
/// assert_eq!(inspected["Layers"].as_array().unwrap().len(), 1);
/// ```
pub struct Registry {
    config: RegistryConfig,
    port: u16,
    process: Option<Process>,
    log: Arc<Mutex<Log>>,
    /// Index of the first access-log line that [`Registry::requests`] reports.
    log_start: AtomicUsize,
    /// Numbers the log flushes.
    flushes: AtomicUsize,
    issuer: Option<TokenIssuer>,
    /// Storage, configuration, certificates; dropped last.
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry as `config` says and waits until it answers `GET /v2/`.
    pub fn start(config: RegistryConfig) -> Registry {
        require_tool(REGISTRY_TOOL, "docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("bi-registry.")
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a temporary directory: {err}"));
        let root = dir.path();
        let port = free_port();
        let mut yaml = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: {HTTP_SECRET}\n",
            storage = yaml_str(&root.join("storage")),
        );
        if config.tls {
            let (cert, key) = self_signed(root, "tls");
            mkdir(&root.join("certs.d"), 0o755);
            std::fs::copy(&cert, root.join("certs.d/ca.crt"))
                .unwrap_or_else(|err| panic!("cannot copy {}: {err}", cert.display()));
            write!(
                yaml,
                "  tls:\n    certificate: {}\n    key: {}\n",
                yaml_str(&cert),
                yaml_str(&key)
            )
            .expect("write to a String");
        }
        let mut issuer = None;
        match &config.auth {
            Auth::Anonymous => {}
            Auth::Htpasswd { user, password } => {
                let path = root.join("htpasswd");
                write(&path, &htpasswd_line(user, password), 0o644);
                write!(
                    yaml,
                    "auth:\n  htpasswd:\n    realm: buildimage-test\n    path: {}\n",
                    yaml_str(&path)
                )
                .expect("write to a String");
            }
            Auth::Token { user, password } => {
                let (cert, key) = self_signed(root, "token");
                let started = TokenIssuer::start(user, password, &cert, &key);
                write!(
                    yaml,
                    "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    \
                     issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    started.realm(),
                    yaml_str(&cert)
                )
                .expect("write to a String");
                issuer = Some(started);
            }
        }
        write(&root.join("config.yml"), yaml.as_bytes(), 0o644);
        let mut registry = Registry {
            config,
            port,
            process: None,
            log: Arc::default(),
            log_start: AtomicUsize::new(0),
            flushes: AtomicUsize::new(0),
            issuer,
            dir,
        };
        registry.start_again();
        registry.clear_log();
        registry
    }

    /// How it was started.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on (the same after [`Registry::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `docker://127.0.0.1:PORT/REPO:TAG`, for skopeo.
    pub fn docker_ref(&self, repo: &str, tag: &str) -> String {
        format!("docker://{}/{repo}:{tag}", self.url())
    }

    /// A folder for `--cert-dir` (containers/image) that trusts the registry's certificate:
    /// `ca.crt`, the self-signed certificate. Panics unless the registry serves TLS.
    pub fn cert_dir(&self) -> PathBuf {
        assert!(
            self.config.tls,
            "Registry::cert_dir: this registry serves plain HTTP; start it with \
             RegistryConfig::with_tls() for a certificate"
        );
        self.dir.path().join("certs.d")
    }

    /// The user and password of an htpasswd or token registry.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match &self.config.auth {
            Auth::Anonymous => None,
            Auth::Htpasswd { user, password } | Auth::Token { user, password } => {
                Some((user, password))
            }
        }
    }

    /// The skopeo flags to reach this registry: `--PREFIXtls-verify=false` (plain HTTP) or
    /// `--PREFIXcert-dir=DIR` (TLS), and `--PREFIXcreds=USER:PASSWORD` (auth). `prefix` is
    /// `""` for `skopeo inspect`, `"src-"` or `"dest-"` for `skopeo copy`.
    pub fn skopeo_args(&self, prefix: &str) -> Vec<String> {
        let mut args = Vec::new();
        if self.config.tls {
            args.push(format!("--{prefix}cert-dir={}", self.cert_dir().display()));
        } else {
            args.push(format!("--{prefix}tls-verify=false"));
        }
        if let Some((user, password)) = self.credentials() {
            args.push(format!("--{prefix}creds={user}:{password}"));
        }
        args
    }

    /// `skopeo inspect` of `REPO:TAG` in this registry, parsed.
    pub fn inspect(&self, repo: &str, tag: &str) -> Value {
        skopeo_inspect(&self.docker_ref(repo, tag), &self.skopeo_args(""))
    }

    /// How many requests the token issuer has had (granted or refused); 0 unless the
    /// registry uses token auth.
    pub fn token_requests(&self) -> usize {
        self.issuer
            .as_ref()
            .map_or(0, |issuer| issuer.shared.requests.load(Ordering::SeqCst))
    }

    /// The token issuer's endpoint, `http://127.0.0.1:PORT/token`, of a token-auth registry.
    pub fn token_realm(&self) -> Option<String> {
        self.issuer.as_ref().map(TokenIssuer::realm)
    }

    /// The requests the registry served since it started or since [`Registry::clear_log`],
    /// oldest first, without the harness's own. Waits until every request answered so far
    /// is in the log.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.flush_log();
        let start = self.log_start.load(Ordering::SeqCst);
        lock(&self.log).access[start..]
            .iter()
            .filter_map(|line| LoggedRequest::parse(line))
            .filter(|request| !request.uri.starts_with(HARNESS_URI))
            .collect()
    }

    /// Forgets the requests served so far: [`Registry::requests`] and the counts start
    /// again from here, to count the requests of one push.
    pub fn clear_log(&self) {
        self.flush_log();
        let end = lock(&self.log).access.len();
        self.log_start.store(end, Ordering::SeqCst);
    }

    /// How many blob uploads to `repo` completed: `PUT /v2/REPO/blobs/uploads/…` answered
    /// 201 (a monolithic `POST …?digest=` is counted too).
    pub fn blob_uploads(&self, repo: &str) -> usize {
        let uploads = format!("/v2/{repo}/blobs/uploads/");
        self.count(|request| {
            request.status == 201
                && request.path().starts_with(&uploads)
                && (request.method == "PUT"
                    || (request.method == "POST" && request.has_param("digest")))
        })
    }

    /// How many cross-repository mounts into `repo` succeeded:
    /// `POST /v2/REPO/blobs/uploads/?mount=…` answered 201.
    pub fn mounts(&self, repo: &str) -> usize {
        let uploads = format!("/v2/{repo}/blobs/uploads/");
        self.count(|request| {
            request.method == "POST"
                && request.status == 201
                && request.path() == uploads
                && request.has_param("mount")
        })
    }

    /// How many manifests were stored in `repo`: `PUT /v2/REPO/manifests/…` answered 201.
    pub fn manifest_puts(&self, repo: &str) -> usize {
        let manifests = format!("/v2/{repo}/manifests/");
        self.count(|request| {
            request.method == "PUT"
                && request.status == 201
                && request.path().starts_with(&manifests)
        })
    }

    /// How many of [`Registry::requests`] satisfy `keep`.
    pub fn count(&self, keep: impl Fn(&LoggedRequest) -> bool) -> usize {
        self.requests()
            .iter()
            .filter(|request| keep(request))
            .count()
    }

    /// Everything the registry wrote to standard error (logrus text: why it refused a
    /// token, say), for messages.
    pub fn server_log(&self) -> String {
        lock(&self.log).messages.join("\n")
    }

    /// Whether the registry process runs.
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Kills the registry (SIGKILL, as a crash would) and waits for it; storage, port,
    /// log and token issuer stay for [`Registry::start_again`].
    pub fn stop(&mut self) {
        let mut process = self
            .process
            .take()
            .expect("Registry::stop: the registry is not running");
        kill(&mut process);
    }

    /// Starts the registry again on the same port with the same storage and waits until
    /// it answers `GET /v2/`. Panics if it runs.
    pub fn start_again(&mut self) {
        assert!(
            self.process.is_none(),
            "Registry::start_again: the registry still runs; call Registry::stop first"
        );
        let config = self.dir.path().join("config.yml");
        let mut cmd = Command::new(REGISTRY_TOOL);
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // REGISTRY_* variables override the configuration file: none from the caller.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(name);
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", display(&cmd)));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let readers = vec![
            read_lines(stdout, Arc::clone(&self.log), |log| &mut log.access),
            read_lines(stderr, Arc::clone(&self.log), |log| &mut log.messages),
        ];
        self.process = Some(Process { child, readers });
        self.wait_ready();
    }

    /// Waits until the registry answers `GET /v2/` (any status), or panics with its log
    /// if it exits or never answers.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            let process = self.process.as_mut().expect("started");
            if let Some(status) = process.child.try_wait().expect("wait for docker-registry") {
                let mut process = self.process.take().expect("started");
                kill(&mut process);
                panic!(
                    "docker-registry exited ({status}) before it answered GET /v2/ on {addr}:\n{}",
                    self.server_log()
                );
            }
            // A TLS registry is probed by the flush below, over `openssl s_client`.
            let answered = if self.config.tls {
                TcpStream::connect_timeout(&addr, IO_TIMEOUT).is_ok()
            } else {
                http(&addr, "GET", "/v2/?harness-probe", &[], b"").is_ok()
            };
            if answered {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer GET /v2/ on {addr} within {READY_TIMEOUT:?}:\n{}",
                self.server_log()
            );
            thread::sleep(Duration::from_millis(10));
        }
        self.flush_log();
    }

    /// Sends a request of its own and waits until the access log has it. The registry
    /// logs a request before its response leaves, so once the flush is in, so is every
    /// request answered before it; only the pipe to the reader thread lags.
    fn flush_log(&self) {
        if self.process.is_none() {
            // `stop` joined the readers: the log is complete.
            return;
        }
        let n = self.flushes.fetch_add(1, Ordering::SeqCst);
        let uri = format!("{HARNESS_URI}flush={n}");
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        if self.config.tls {
            self.tls_get(&uri);
        } else {
            http(&addr, "GET", &uri, &[], b"").unwrap_or_else(|err| {
                panic!(
                    "registry on {addr}: GET {uri} failed: {err}\n{}",
                    self.server_log()
                )
            });
        }
        let needle = format!(" {uri} ");
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        while !lock(&self.log)
            .access
            .iter()
            .rev()
            .any(|line| line.contains(&needle))
        {
            assert!(
                Instant::now() < deadline,
                "registry on {addr}: GET {uri} not in its access log after {FLUSH_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// `GET uri` over TLS with `openssl s_client`, checking the certificate against
    /// [`Registry::cert_dir`] for the IP address `127.0.0.1`.
    fn tls_get(&self, uri: &str) {
        let ca = self.cert_dir().join("ca.crt");
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_client",
            "-quiet",
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
        ])
        .arg("-CAfile")
        .arg(&ca)
        .arg("-connect")
        .arg(self.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", display(&cmd)));
        let request = format!(
            "GET {uri} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.url()
        );
        // `-quiet` reads on after standard input ends, until the server closes.
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(request.as_bytes())
            .expect("write to openssl s_client");
        drop(stdin);
        let output = child.wait_with_output().expect("wait for openssl s_client");
        let output = check(&cmd, output);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.starts_with("HTTP/1.1 "),
            "{}: no HTTP answer from the TLS registry:\n{stdout}",
            display(&cmd)
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            kill(&mut process);
        }
    }
}

/// Kills the registry and waits for it and for its readers, so the log is complete.
fn kill(process: &mut Process) {
    // It may have exited already; `wait` reaps it either way.
    let _ = process.child.kill();
    let _ = process.child.wait();
    for reader in process.readers.drain(..) {
        let _ = reader.join();
    }
}

/// A thread appending the lines of `pipe` to one list of the log.
fn read_lines(
    pipe: impl Read + Send + 'static,
    log: Arc<Mutex<Log>>,
    lines: fn(&mut Log) -> &mut Vec<String>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            lines(&mut lock(&log)).push(line);
        }
    })
}

/// `skopeo inspect EXTRA_ARGS REFERENCE`, parsed (the manifest itself with `--raw`).
/// [`Registry::skopeo_args`] gives the flags a registry needs.
pub fn skopeo_inspect<S: AsRef<OsStr>>(reference: &str, extra_args: &[S]) -> Value {
    require_tool("skopeo", "skopeo");
    let output = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .args(extra_args)
            .arg(reference)
            .stdin(Stdio::null()),
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "skopeo inspect {reference} printed no JSON ({err}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A free port on 127.0.0.1, as the kernel hands them out. Another process could take it
/// before the registry binds it; the kernel hands out ports in turn, so that is rare.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap_or_else(|err| panic!("cannot find a free port on 127.0.0.1: {err}"))
        .port()
}

/// A path as a YAML string (JSON strings are YAML).
fn yaml_str(path: &Path) -> String {
    serde_json::to_string(path.to_str().expect("UTF-8 temporary path")).expect("JSON string")
}

/// `USER:BCRYPT\n` from `htpasswd -Bbn`.
fn htpasswd_line(user: &str, password: &str) -> Vec<u8> {
    require_tool("htpasswd", "apache2-utils");
    let output = run_ok(Command::new("htpasswd").args(["-Bbn", user, password]));
    let text = String::from_utf8_lossy(&output.stdout);
    format!("{}\n", text.trim()).into_bytes()
}

/// Makes a P-256 key (`NAME.key`, PKCS#8 PEM) and a self-signed CA certificate for it
/// (`NAME.crt`) valid for `127.0.0.1` and `localhost`, with the `openssl` CLI, in `dir`.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    require_tool("openssl", "openssl");
    let conf = dir.join(format!("{name}.cnf"));
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.crt"));
    // Our own configuration, not the system's openssl.cnf: the extensions are exactly
    // these. Go takes a certificate found in the roots as its own chain, so one
    // self-signed certificate serves as both CA (`ca.crt`) and server certificate.
    let text = format!(
        "[req]\ndistinguished_name = dn\nx509_extensions = ext\nprompt = no\n\
         [dn]\nCN = buildimage test {name}\n\
         [ext]\nbasicConstraints = critical,CA:TRUE\n\
         keyUsage = critical,digitalSignature,keyCertSign\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = IP:127.0.0.1,DNS:localhost\n\
         subjectKeyIdentifier = hash\n"
    );
    write(&conf, text.as_bytes(), 0o644);
    run_ok(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .arg("-out")
            .arg(&key),
    );
    run_ok(
        Command::new("openssl")
            .args(["req", "-new", "-x509", "-sha256", "-days", "7", "-config"])
            .arg(&conf)
            .arg("-key")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    (cert, key)
}

/// The base64 body of the first PEM block labelled `label` in `path`, on one line.
fn pem_base64(path: &Path, label: &str) -> String {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = text
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .unwrap_or_else(|| panic!("{} has no {label} PEM block", path.display()))
        .0;
    body.split_whitespace().collect()
}

/// The token issuer of a token-auth registry: a thread answering
/// `GET /token?service=…&scope=…` on 127.0.0.1.
struct TokenIssuer {
    port: u16,
    shared: Arc<IssuerShared>,
    thread: Option<JoinHandle<()>>,
}

/// What the issuer's threads share.
struct IssuerShared {
    user: String,
    password: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// The signing certificate, base64 DER, for the JWT header's `x5c`.
    x5c: String,
    requests: AtomicUsize,
    tokens: AtomicU64,
    closing: AtomicBool,
}

impl TokenIssuer {
    /// Starts an issuer signing with `key`, whose certificate `cert` the registry has as
    /// its `rootcertbundle`.
    fn start(user: &str, password: &str, cert: &Path, key: &Path) -> TokenIssuer {
        let rng = SystemRandom::new();
        let pkcs8 = BASE64
            .decode(pem_base64(key, "PRIVATE KEY").as_bytes())
            .unwrap_or_else(|err| panic!("{} is not base64: {err}", key.display()));
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .unwrap_or_else(|err| panic!("ring cannot read {}: {err}", key.display()));
        let (listener, port) = listen("token issuer");
        let shared = Arc::new(IssuerShared {
            user: user.to_owned(),
            password: password.to_owned(),
            key,
            rng,
            x5c: pem_base64(cert, "CERTIFICATE"),
            requests: AtomicUsize::new(0),
            tokens: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        });
        let thread = accept_each(
            listener,
            Arc::clone(&shared),
            |shared| &shared.closing,
            |shared, stream| {
                let _ = shared.serve(stream);
            },
        );
        TokenIssuer {
            port,
            shared,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/token`.
    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `closing`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl IssuerShared {
    /// Answers one request, then closes the connection.
    fn serve(&self, stream: TcpStream) -> io::Result<()> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        let (_, uri) = head.request_line();
        if uri.split('?').next() == Some("/token") {
            self.requests.fetch_add(1, Ordering::SeqCst);
        }
        let (status, extra, body) = self.answer(&head);
        let mut response = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n",
            reason(status),
            body.len()
        );
        response.push_str(extra);
        response.push_str("\r\n");
        response.push_str(&body);
        let mut stream = stream;
        stream.write_all(response.as_bytes())?;
        stream.flush()
    }

    /// The status, extra header lines and body for a request.
    fn answer(&self, head: &Head) -> (u16, &'static str, String) {
        let (method, uri) = head.request_line();
        let (path, query) = uri.split_once('?').unwrap_or((&uri, ""));
        if method != "GET" || path != "/token" {
            let body = json!({ "error": format!("no {method} {path} here: GET /token?…") });
            return (404, "", body.to_string());
        }
        if !self.authorized(head.header("authorization")) {
            let body = json!({ "error": "wrong or missing Basic credentials" });
            return (
                401,
                "WWW-Authenticate: Basic realm=\"buildimage-test-issuer\"\r\n",
                body.to_string(),
            );
        }
        let mut service = String::new();
        let mut access = Vec::new();
        for (name, value) in query_pairs(query) {
            match name.as_str() {
                "service" => service = value,
                // `repository:NAME:pull,push`; a name may hold `:` (a host with a port).
                "scope" => {
                    for scope in value.split(' ') {
                        if let Some((kind, rest)) = scope.split_once(':')
                            && let Some((name, actions)) = rest.rsplit_once(':')
                        {
                            access.push(json!({
                                "type": kind,
                                "name": name,
                                "actions": actions.split(',').collect::<Vec<_>>(),
                            }));
                        }
                    }
                }
                _ => {}
            }
        }
        let token = self.sign(&service, &access);
        let body = json!({ "token": token, "access_token": token, "expires_in": TOKEN_LIFETIME });
        (200, "", body.to_string())
    }

    /// Whether `authorization` is `Basic base64(user:password)` of the configured user.
    fn authorized(&self, authorization: Option<&str>) -> bool {
        let Some((scheme, encoded)) = authorization.and_then(|value| value.split_once(' ')) else {
            return false;
        };
        let expected = format!("{}:{}", self.user, self.password);
        scheme.eq_ignore_ascii_case("basic")
            && BASE64
                .decode(encoded.trim().as_bytes())
                .is_ok_and(|decoded| decoded == expected.as_bytes())
    }

    /// A JWT as distribution 2.8 verifies it (registry/auth/token/token.go): `iss` one of
    /// its trusted issuers, `aud` its service, `exp` and `nbf` around now (60 s leeway),
    /// signed by the key of the first `x5c` certificate, which must chain to its
    /// `rootcertbundle`; `access` lists what the bearer may do.
    fn sign(&self, service: &str, access: &[Value]) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let header = json!({ "alg": "ES256", "typ": "JWT", "x5c": [self.x5c] });
        let claims = json!({
            "iss": TOKEN_ISSUER,
            "sub": self.user,
            "aud": service,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now.saturating_sub(10),
            "iat": now,
            "jti": format!("buildimage-test-{}", self.tokens.fetch_add(1, Ordering::SeqCst)),
            "access": access,
        });
        let signed = format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
            BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
        );
        // The FIXED encoding is JOSE's: r and s, 32 bytes each, which libtrust expects.
        let signature = self
            .key
            .sign(&self.rng, signed.as_bytes())
            .unwrap_or_else(|err| panic!("token issuer: ES256 signing failed: {err}"));
        format!("{signed}.{}", BASE64URL_NOPAD.encode(signature.as_ref()))
    }
}

/// The `name=value` pairs of a query, percent-decoded.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

/// `%XX` and `+` decoded, as in a query.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| {
            bytes
                .get(at)
                .and_then(|&digit| (digit as char).to_digit(16))
        };
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'+', ..) => out.push(b' '),
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 2;
            }
            (byte, ..) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The reason phrase of the statuses the harness answers with.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Injected",
    }
}

/// What [`FaultProxy`] does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Answer it with this status instead of forwarding it (429 and 503 come with
    /// `Retry-After: 1`), and keep the connection.
    Status(u16),
    /// Close the connection without an answer.
    Cut,
    /// Hold it, unanswered and not forwarded, until [`FaultProxy::resume`]; then forward
    /// it. [`FaultProxy::held`] counts the requests waiting.
    Hold,
}

/// A fault for the next [`Rule::times`] requests that match it: see
/// [`FaultProxy::add_rule`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Only requests with this method (`PUT`), or any.
    pub method: Option<String>,
    /// Only requests whose target (path and query) contains this, or any.
    pub uri_contains: Option<String>,
    /// How many matching requests it still applies to.
    pub times: usize,
    /// What happens to them.
    pub action: Action,
}

impl Rule {
    /// Answer the next matching request with `status`.
    pub fn status(status: u16) -> Rule {
        Rule {
            method: None,
            uri_contains: None,
            times: 1,
            action: Action::Status(status),
        }
    }

    /// Cut the connection of the next matching request.
    pub fn cut() -> Rule {
        Rule {
            action: Action::Cut,
            ..Rule::status(0)
        }
    }

    /// Hold the next matching request until [`FaultProxy::resume`].
    pub fn hold() -> Rule {
        Rule {
            action: Action::Hold,
            ..Rule::status(0)
        }
    }

    /// For the next `times` matching requests instead of one.
    #[must_use]
    pub fn times(mut self, times: usize) -> Rule {
        self.times = times;
        self
    }

    /// Only for requests with `method`.
    #[must_use]
    pub fn method(mut self, method: &str) -> Rule {
        self.method = Some(method.to_owned());
        self
    }

    /// Only for requests whose target contains `part`.
    #[must_use]
    pub fn uri_contains(mut self, part: &str) -> Rule {
        self.uri_contains = Some(part.to_owned());
        self
    }

    fn matches(&self, method: &str, uri: &str) -> bool {
        self.times > 0
            && self.method.as_deref().is_none_or(|wanted| wanted == method)
            && self
                .uri_contains
                .as_deref()
                .is_none_or(|part| uri.contains(part))
    }
}

/// What became of a request that reached a [`FaultProxy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Sent on to the registry.
    Forwarded,
    /// Answered by the proxy with this status.
    Answered(u16),
    /// Its connection was closed without an answer.
    Cut,
    /// Held until [`FaultProxy::resume`], then forwarded (or cut, if the proxy stopped or
    /// went away meanwhile).
    Held,
}

/// A request that reached a [`FaultProxy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxiedRequest {
    /// The method.
    pub method: String,
    /// The request target, path and query.
    pub uri: String,
    /// What the proxy did with it.
    pub outcome: Outcome,
}

/// A plain-HTTP proxy on a free 127.0.0.1 port in front of a [`Registry`], which forwards
/// requests unless a test told it to fail or cut them. It reads request boundaries
/// (`Content-Length` and chunked bodies), so its rules count requests, also several on one
/// keep-alive connection; answers are passed back byte for byte. Clients must not
/// pipeline (none of Go's or Rust's common ones do).
///
/// ```no_run
/// use buildimage_test_support::{FaultProxy, Registry, RegistryConfig, Rule};
///
/// let registry = Registry::start(RegistryConfig::plain());
/// let proxy = FaultProxy::start(&registry);
/// proxy.add_rule(Rule::status(500).method("PUT").uri_contains("/blobs/uploads/"));
/// // ... push to `proxy.docker_ref("app", "v1")`: the first blob PUT fails once ...
/// ```
pub struct FaultProxy {
    port: u16,
    shared: Arc<ProxyShared>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the proxy's threads share.
struct ProxyShared {
    upstream: SocketAddr,
    state: Mutex<ProxyState>,
    /// Signalled by [`FaultProxy::resume`], `stop_forwarding` and drop, for held requests.
    released: Condvar,
    closing: AtomicBool,
    connections: AtomicU64,
}

/// The proxy's rules and record.
#[derive(Default)]
struct ProxyState {
    rules: Vec<Rule>,
    /// Requests still let through before every later one is cut ([`FaultProxy::cut_after`]).
    cut_after: Option<usize>,
    /// [`FaultProxy::stop_forwarding`]: close everything.
    stopped: bool,
    /// Requests waiting on a [`Action::Hold`] rule.
    held: usize,
    /// Counts [`FaultProxy::resume`] calls: a held request goes on once it changes.
    resumes: u64,
    seen: Vec<ProxiedRequest>,
    /// Both ends of every open connection, to close them at once.
    live: BTreeMap<u64, (TcpStream, TcpStream)>,
}

/// A listener on a free 127.0.0.1 port for `what`, and the port.
fn listen(what: &str) -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|err| panic!("{what}: cannot listen on 127.0.0.1: {err}"));
    let port = listener.local_addr().expect("listener address").port();
    (listener, port)
}

/// Accepts connections on `listener` until the flag `closing` picks out of `shared` is
/// set, and serves each on a thread of its own with `serve`.
fn accept_each<S: Send + Sync + 'static>(
    listener: TcpListener,
    shared: Arc<S>,
    closing: fn(&S) -> &AtomicBool,
    serve: fn(&S, TcpStream),
) -> JoinHandle<()> {
    thread::spawn(move || {
        for stream in listener.incoming() {
            if closing(&shared).load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else { continue };
            let shared = Arc::clone(&shared);
            thread::spawn(move || serve(&shared, stream));
        }
    })
}

impl FaultProxy {
    /// A proxy forwarding to `registry`, which must serve plain HTTP.
    pub fn start(registry: &Registry) -> FaultProxy {
        assert!(
            !registry.config.tls,
            "FaultProxy::start: the proxy reads HTTP and cannot see into TLS; start the \
             registry without RegistryConfig::with_tls()"
        );
        let (listener, port) = listen("FaultProxy");
        let shared = Arc::new(ProxyShared {
            upstream: SocketAddr::from(([127, 0, 0, 1], registry.port)),
            state: Mutex::default(),
            released: Condvar::new(),
            closing: AtomicBool::new(false),
            connections: AtomicU64::new(0),
        });
        let acceptor = accept_each(
            listener,
            Arc::clone(&shared),
            |shared| &shared.closing,
            |shared, stream| {
                // Closed at once while stopped: the registry is "gone".
                if !lock(&shared.state).stopped {
                    shared.serve(&stream);
                }
            },
        );
        FaultProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT`, the proxy's address as a registry part of image references.
    pub fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `docker://127.0.0.1:PORT/REPO:TAG` through the proxy.
    pub fn docker_ref(&self, repo: &str, tag: &str) -> String {
        format!("docker://{}/{repo}:{tag}", self.url())
    }

    /// Adds a rule; the first rule that matches a request decides it, and a rule is used
    /// up after [`Rule::times`] requests.
    pub fn add_rule(&self, rule: Rule) {
        lock(&self.shared.state).rules.push(rule);
    }

    /// Answers the next `n` requests with `status` (500, or 429 with `Retry-After: 1`).
    pub fn fail_next(&self, n: usize, status: u16) {
        self.add_rule(Rule::status(status).times(n));
    }

    /// Lets `k` more requests through (forwarded or failed by a rule), then cuts every
    /// later one, with its connection, until [`FaultProxy::resume`]: a registry that
    /// stopped mid-push.
    pub fn cut_after(&self, k: usize) {
        lock(&self.shared.state).cut_after = Some(k);
    }

    /// Holds every blob upload request (`…/blobs/uploads/…`: the POST that starts one,
    /// PATCH and PUT) until [`FaultProxy::resume`], so that a push is caught in the
    /// middle; [`FaultProxy::held`] says when one is waiting.
    pub fn hold_uploads(&self) {
        self.add_rule(
            Rule::hold()
                .uri_contains("/blobs/uploads/")
                .times(usize::MAX),
        );
    }

    /// How many requests wait on a hold rule now.
    pub fn held(&self) -> usize {
        lock(&self.shared.state).held
    }

    /// Stops forwarding at once: every open connection is closed, mid-request or not, and
    /// every new one right after it is accepted, until [`FaultProxy::resume`].
    pub fn stop_forwarding(&self) {
        let mut state = lock(&self.shared.state);
        state.stopped = true;
        for (client, upstream) in state.live.values() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
        self.shared.released.notify_all();
    }

    /// Forwards everything again: drops every rule, [`FaultProxy::cut_after`] and
    /// [`FaultProxy::stop_forwarding`], and sends held requests on.
    pub fn resume(&self) {
        let mut state = lock(&self.shared.state);
        state.rules.clear();
        state.cut_after = None;
        state.stopped = false;
        state.resumes += 1;
        self.shared.released.notify_all();
    }

    /// Every request that reached the proxy, oldest first, and what became of it.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        lock(&self.shared.state).seen.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let state = lock(&self.shared.state);
        for (client, upstream) in state.live.values() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
        self.shared.released.notify_all();
    }
}

impl ProxyShared {
    /// Carries one client connection until either side closes or a rule cuts it.
    fn serve(&self, client: &TcpStream) {
        // The registry is down: the client sees its connection closed.
        let Ok(upstream) = TcpStream::connect(self.upstream) else {
            return;
        };
        let id = self.connections.fetch_add(1, Ordering::SeqCst);
        let (Ok(client_end), Ok(upstream_end)) = (client.try_clone(), upstream.try_clone()) else {
            return;
        };
        {
            let mut state = lock(&self.state);
            if state.stopped {
                return;
            }
            state.live.insert(id, (client_end, upstream_end));
        }
        // Answers go back byte for byte; without pipelining, an answer is complete before
        // the client sends the request that a rule might answer instead.
        let pump = match (upstream.try_clone(), client.try_clone()) {
            (Ok(mut from), Ok(mut to)) => Some(thread::spawn(move || {
                let _ = io::copy(&mut from, &mut to);
                let _ = to.shutdown(Shutdown::Write);
            })),
            _ => None,
        };
        let _ = self.forward_requests(client, &upstream);
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
        if let Some(pump) = pump {
            let _ = pump.join();
        }
        lock(&self.state).live.remove(&id);
    }

    fn forward_requests(&self, client: &TcpStream, upstream: &TcpStream) -> io::Result<()> {
        let mut reader = BufReader::new(client.try_clone()?);
        let (mut to_upstream, mut to_client) = (upstream, client);
        // Not HTTP (a TLS handshake from a client probing for HTTPS first): answer as Go's
        // servers, distribution's included, do, at once, rather than wait for a request line.
        if reader
            .fill_buf()?
            .first()
            .is_some_and(|b| !b.is_ascii_alphabetic() && !b"\r\n".contains(b))
        {
            to_client.write_all(
                b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            )?;
            return Ok(());
        }
        while let Some(head) = read_head(&mut reader)? {
            let (method, uri) = head.request_line();
            let framing = head.request_framing()?;
            let mut outcome = self.decide(&method, &uri);
            if outcome == Outcome::Held && !self.wait_released() {
                outcome = Outcome::Cut;
            }
            match outcome {
                Outcome::Forwarded | Outcome::Held => {
                    to_upstream.write_all(&head.raw)?;
                    copy_body(&mut reader, framing, &mut to_upstream, true)?;
                    to_upstream.flush()?;
                }
                Outcome::Answered(status) => {
                    // A client waiting for `100 Continue` has not sent its body: answer
                    // and close rather than wait for it.
                    let waiting = head
                        .header("expect")
                        .is_some_and(|value| value.eq_ignore_ascii_case("100-continue"));
                    if !waiting {
                        copy_body(&mut reader, framing, &mut io::sink(), true)?;
                    }
                    to_client.write_all(&fault_response(status, &method, waiting))?;
                    to_client.flush()?;
                    if waiting {
                        return Ok(());
                    }
                }
                Outcome::Cut => return Ok(()),
            }
        }
        Ok(())
    }

    /// Waits, counted in `held`, until [`FaultProxy::resume`]; false if the proxy stopped
    /// forwarding or went away instead.
    fn wait_released(&self) -> bool {
        let mut state = lock(&self.state);
        let resumes = state.resumes;
        state.held += 1;
        while state.resumes == resumes && !state.stopped && !self.closing.load(Ordering::SeqCst) {
            // The timeout only guards against a missed wake-up.
            state = self
                .released
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.held -= 1;
        state.resumes != resumes
    }

    /// Applies the rules to a request, and records it.
    fn decide(&self, method: &str, uri: &str) -> Outcome {
        let mut state = lock(&self.state);
        let outcome = if state.stopped || state.cut_after == Some(0) {
            Outcome::Cut
        } else {
            if let Some(left) = state.cut_after.as_mut() {
                *left -= 1;
            }
            match state
                .rules
                .iter_mut()
                .find(|rule| rule.matches(method, uri))
            {
                Some(rule) => {
                    rule.times -= 1;
                    match rule.action {
                        Action::Status(status) => Outcome::Answered(status),
                        Action::Cut => Outcome::Cut,
                        Action::Hold => Outcome::Held,
                    }
                }
                None => Outcome::Forwarded,
            }
        };
        state.seen.push(ProxiedRequest {
            method: method.to_owned(),
            uri: uri.to_owned(),
            outcome,
        });
        outcome
    }
}

/// The proxy's own answer: a distribution-style error body.
fn fault_response(status: u16, method: &str, close: bool) -> Vec<u8> {
    let body = json!({ "errors": [{
        "code": if status == 429 { "TOOMANYREQUESTS" } else { "UNKNOWN" },
        "message": format!("{status} injected by FaultProxy"),
    }] })
    .to_string();
    let mut response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Docker-Distribution-Api-Version: registry/2.0\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    if matches!(status, 429 | 503) {
        response.push_str("Retry-After: 1\r\n");
    }
    if close {
        response.push_str("Connection: close\r\n");
    }
    response.push_str("\r\n");
    if method != "HEAD" {
        response.push_str(&body);
    }
    response.into_bytes()
}

/// The head of an HTTP/1.1 message: start line, headers, and the bytes as read.
struct Head {
    start: String,
    headers: Vec<(String, String)>,
    raw: Vec<u8>,
}

/// How long a message body is.
#[derive(Clone, Copy, Debug)]
enum Framing {
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// A response without either: until the connection closes.
    UntilClose,
}

impl Head {
    /// The value of the first header called `name` (any case), trimmed.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Method and target of a request line.
    fn request_line(&self) -> (String, String) {
        let mut parts = self.start.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let uri = parts.next().unwrap_or_default().to_owned();
        (method, uri)
    }

    /// A request's body: chunked, or `Content-Length` (0 without one, RFC 9112 §6.3).
    fn request_framing(&self) -> io::Result<Framing> {
        if self.is_chunked() {
            return Ok(Framing::Chunked);
        }
        Ok(Framing::Length(self.content_length()?.unwrap_or(0)))
    }

    /// A response's body, for a request with `method`.
    fn response_framing(&self, method: &str) -> io::Result<Framing> {
        let status = self.status();
        if method == "HEAD" || (100..200).contains(&status) || matches!(status, 204 | 304) {
            return Ok(Framing::Length(0));
        }
        if self.is_chunked() {
            return Ok(Framing::Chunked);
        }
        Ok(self
            .content_length()?
            .map_or(Framing::UntilClose, Framing::Length))
    }

    /// The status of a response line, 0 if there is none.
    fn status(&self) -> u16 {
        self.start
            .split(' ')
            .nth(1)
            .and_then(|status| status.parse().ok())
            .unwrap_or(0)
    }

    fn is_chunked(&self) -> bool {
        self.header("transfer-encoding").is_some_and(|value| {
            value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
        })
    }

    fn content_length(&self) -> io::Result<Option<u64>> {
        self.header("content-length")
            .map(|value| {
                value
                    .parse()
                    .map_err(|_| invalid(format!("Content-Length {value}")))
            })
            .transpose()
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads a message head; `None` if the connection closed before its first byte.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    let mut lines = Vec::new();
    loop {
        let start = raw.len();
        let read = reader.read_until(b'\n', &mut raw)?;
        if read == 0 {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if raw.len() > 64 * 1024 {
            return Err(invalid("HTTP head over 64 KiB".to_owned()));
        }
        let line = String::from_utf8_lossy(&raw[start..])
            .trim_end_matches(['\r', '\n'])
            .to_owned();
        if line.is_empty() {
            // Blank lines before a request line are allowed (RFC 9112 §2.2).
            if lines.is_empty() {
                continue;
            }
            break;
        }
        lines.push(line);
    }
    let start = lines.remove(0);
    let headers = lines
        .into_iter()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect();
    Ok(Some(Head {
        start,
        headers,
        raw,
    }))
}

/// Copies a body from `reader` to `out`: as it came (`raw`, chunk framing included) or
/// decoded.
fn copy_body(
    reader: &mut impl BufRead,
    framing: Framing,
    out: &mut impl Write,
    raw: bool,
) -> io::Result<()> {
    match framing {
        Framing::Length(length) => copy_exactly(reader, length, out),
        Framing::UntilClose => io::copy(reader, out).map(drop),
        Framing::Chunked => loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if raw {
                out.write_all(&line)?;
            }
            let text = String::from_utf8_lossy(&line);
            let size = text.split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| invalid(format!("chunk size {size:?}")))?;
            if size == 0 {
                // Trailers, up to a blank line.
                loop {
                    let mut trailer = Vec::new();
                    if reader.read_until(b'\n', &mut trailer)? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    if raw {
                        out.write_all(&trailer)?;
                    }
                    if trailer == b"\r\n" || trailer == b"\n" {
                        return Ok(());
                    }
                }
            }
            copy_exactly(reader, size, out)?;
            let mut crlf = Vec::new();
            reader.read_until(b'\n', &mut crlf)?;
            if raw {
                out.write_all(&crlf)?;
            }
        },
    }
}

fn copy_exactly(reader: &mut impl Read, length: u64, out: &mut impl Write) -> io::Result<()> {
    let copied = io::copy(&mut reader.take(length), out)?;
    if copied == length {
        Ok(())
    } else {
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}

/// An HTTP answer, body decoded. The harness only needs to know that one came; the
/// tests read it.
#[derive(Debug)]
#[cfg_attr(not(test), expect(dead_code, reason = "read by the tests"))]
struct HttpResponse {
    status: u16,
    head: Head,
    body: Vec<u8>,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head")
            .field("start", &self.start)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// Writes a request with `Host` and `Content-Length`, and `extra` headers.
fn send_request(
    stream: &mut impl Write,
    addr: &SocketAddr,
    method: &str,
    uri: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut request = format!("{method} {uri} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in extra {
        write!(request, "{name}: {value}\r\n").expect("write to a String");
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        write!(request, "Content-Length: {}\r\n", body.len()).expect("write to a String");
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)?;
    stream.flush()
}

/// Reads one answer to a request with `method`.
fn read_response(reader: &mut impl BufRead, method: &str) -> io::Result<HttpResponse> {
    let head = read_head(reader)?.ok_or(io::ErrorKind::UnexpectedEof)?;
    let framing = head.response_framing(method)?;
    let mut body = Vec::new();
    copy_body(reader, framing, &mut body, false)?;
    Ok(HttpResponse {
        status: head.status(),
        head,
        body,
    })
}

/// One request on a fresh connection (`Connection: close`), and its answer.
fn http(
    addr: &SocketAddr,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let stream = TcpStream::connect_timeout(addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut headers = headers.to_vec();
    headers.push(("Connection", "close"));
    send_request(&mut &stream, addr, method, uri, &headers, body)?;
    read_response(&mut BufReader::new(&stream), method)
}

/// Locks `mutex`; a test that panicked while holding it left consistent data.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sha256_hex;

    impl HttpResponse {
        fn header(&self, name: &str) -> Option<&str> {
            self.head.header(name)
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    /// A tiny image: an empty layer (a tar of two zero blocks), its config, its manifest.
    struct TinyImage {
        layer: Vec<u8>,
        config: Vec<u8>,
        manifest: Vec<u8>,
    }

    impl TinyImage {
        fn new() -> TinyImage {
            let layer = vec![0; 1024];
            let config = json!({
                "architecture": "amd64",
                "os": "linux",
                "rootfs": { "type": "layers", "diff_ids": [digest(&layer)] },
            })
            .to_string()
            .into_bytes();
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digest(&config),
                    "size": config.len(),
                },
                "layers": [{
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(&layer),
                    "size": layer.len(),
                }],
            })
            .to_string()
            .into_bytes();
            TinyImage {
                layer,
                config,
                manifest,
            }
        }

        /// Writes it as an OCI layout with the tag `t`, for `skopeo copy oci:DIR:t`.
        fn write_layout(&self, dir: &Path) {
            mkdir(&dir.join("blobs/sha256"), 0o755);
            for blob in [&self.layer, &self.config, &self.manifest] {
                write(
                    &dir.join("blobs/sha256").join(sha256_hex(blob)),
                    blob,
                    0o644,
                );
            }
            write(
                &dir.join("oci-layout"),
                br#"{"imageLayoutVersion":"1.0.0"}"#,
                0o644,
            );
            let index = json!({
                "schemaVersion": 2,
                "manifests": [{
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest(&self.manifest),
                    "size": self.manifest.len(),
                    "annotations": { "org.opencontainers.image.ref.name": "t" },
                }],
            });
            write(&dir.join("index.json"), index.to_string().as_bytes(), 0o644);
        }

        /// Pushes it as `REPO:TAG` with raw HTTP (POST then PUT per blob), `auth` sent
        /// with every request.
        fn push(&self, addr: &SocketAddr, repo: &str, tag: &str, auth: &[(&str, &str)]) {
            for blob in [&self.layer, &self.config] {
                upload(addr, repo, blob, auth);
            }
            let mut headers = auth.to_vec();
            headers.push(("Content-Type", "application/vnd.oci.image.manifest.v1+json"));
            let put = http(
                addr,
                "PUT",
                &format!("/v2/{repo}/manifests/{tag}"),
                &headers,
                &self.manifest,
            )
            .expect("PUT manifest");
            assert_eq!(put.status, 201, "PUT manifest: {}", put.text());
        }
    }

    fn digest(bytes: &[u8]) -> String {
        format!("sha256:{}", sha256_hex(bytes))
    }

    /// The path and query of a `Location`, absolute or not.
    fn location_path(response: &HttpResponse) -> String {
        let location = response.header("location").expect("Location");
        let start = location.find("/v2/").expect("Location under /v2/");
        location[start..].to_owned()
    }

    /// A blob upload: `POST …/blobs/uploads/` (202), then `PUT LOCATION&digest=` (201).
    fn upload(addr: &SocketAddr, repo: &str, blob: &[u8], auth: &[(&str, &str)]) {
        let started = http(
            addr,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            auth,
            b"",
        )
        .expect("POST upload");
        assert_eq!(started.status, 202, "POST upload: {}", started.text());
        let location = location_path(&started);
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = http(
            addr,
            "PUT",
            &format!("{location}{separator}digest={}", digest(blob)),
            auth,
            blob,
        )
        .expect("PUT upload");
        assert_eq!(put.status, 201, "PUT upload: {}", put.text());
    }

    fn addr(registry: &Registry) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], registry.port()))
    }

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            BASE64.encode(format!("{user}:{password}").as_bytes())
        )
    }

    #[test]
    fn plain_registry_answers_and_counts_uploads_and_mounts() {
        let registry = Registry::start(RegistryConfig::plain());
        let addr = addr(&registry);
        assert_eq!(
            registry.requests(),
            [],
            "the harness's own requests are not listed"
        );
        let v2 = http(&addr, "GET", "/v2/", &[], b"").unwrap();
        assert_eq!(v2.status, 200);

        let image = TinyImage::new();
        image.push(&addr, "team/app", "v1", &[]);
        assert_eq!(registry.blob_uploads("team/app"), 2);
        assert_eq!(registry.manifest_puts("team/app"), 1);

        registry.clear_log();
        let mount = http(
            &addr,
            "POST",
            &format!(
                "/v2/other/blobs/uploads/?mount={}&from=team/app",
                digest(&image.layer)
            ),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(mount.status, 201, "{}", mount.text());
        assert_eq!(registry.mounts("other"), 1);
        assert_eq!(registry.blob_uploads("other"), 0);
        let requests = registry.requests();
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].path(), "/v2/other/blobs/uploads/");
        assert!(requests[0].has_param("from"));

        let inspected = registry.inspect("team/app", "v1");
        assert_eq!(inspected["Digest"], json!(digest(&image.manifest)));
        assert_eq!(inspected["Layers"], json!([digest(&image.layer)]));
        assert_eq!(registry.token_requests(), 0);
    }

    #[test]
    fn htpasswd_registry_wants_the_password() {
        let registry = Registry::start(RegistryConfig::plain().with_htpasswd("alice", "s3cret"));
        let addr = addr(&registry);
        let anonymous = http(&addr, "GET", "/v2/", &[], b"").unwrap();
        assert_eq!(anonymous.status, 401);
        assert!(
            anonymous
                .header("www-authenticate")
                .is_some_and(|value| value.starts_with("Basic ")),
            "{anonymous:?}"
        );
        let wrong = basic("alice", "wrong");
        let right = basic("alice", "s3cret");
        let denied = http(&addr, "GET", "/v2/", &[("Authorization", &wrong)], b"").unwrap();
        assert_eq!(denied.status, 401);
        let allowed = http(&addr, "GET", "/v2/", &[("Authorization", &right)], b"").unwrap();
        assert_eq!(allowed.status, 200);
        TinyImage::new().push(&addr, "app", "v1", &[("Authorization", &right)]);
        let statuses: Vec<u16> = registry.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [401, 401, 200, 202, 201, 202, 201, 201]);
        assert_eq!(
            registry.inspect("app", "v1")["Layers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn token_registry_accepts_tokens_of_its_issuer_for_their_scope() {
        let registry = Registry::start(RegistryConfig::plain().with_token("bob", "hunter2"));
        let addr = addr(&registry);
        let challenge = http(&addr, "GET", "/v2/", &[], b"").unwrap();
        assert_eq!(challenge.status, 401);
        let realm = registry.token_realm().unwrap();
        assert_eq!(
            challenge.header("www-authenticate"),
            Some(format!("Bearer realm=\"{realm}\",service=\"{TOKEN_SERVICE}\"").as_str())
        );
        let issuer: SocketAddr = realm
            .strip_prefix("http://")
            .and_then(|rest| rest.strip_suffix("/token"))
            .unwrap()
            .parse()
            .unwrap();
        let token_for = |scope: &str, user: &str, password: &str| {
            let auth = basic(user, password);
            let uri = format!("/token?service={TOKEN_SERVICE}&scope={scope}");
            http(&issuer, "GET", &uri, &[("Authorization", &auth)], b"").unwrap()
        };

        assert_eq!(token_for("", "bob", "wrong").status, 401);
        let plain = token_for("", "bob", "hunter2");
        assert_eq!(plain.status, 200, "{}", plain.text());
        let answer: Value = serde_json::from_slice(&plain.body).unwrap();
        assert_eq!(answer["expires_in"], json!(TOKEN_LIFETIME));
        assert_eq!(answer["token"], answer["access_token"]);
        let bearer = format!("Bearer {}", answer["token"].as_str().unwrap());
        let v2 = http(&addr, "GET", "/v2/", &[("Authorization", &bearer)], b"").unwrap();
        assert_eq!(v2.status, 200, "{}\n{}", v2.text(), registry.server_log());

        // A token without the push scope may not start an upload; one with it may.
        let upload_uri = "/v2/app/blobs/uploads/";
        let refused = http(
            &addr,
            "POST",
            upload_uri,
            &[("Authorization", &bearer)],
            b"",
        )
        .unwrap();
        assert_eq!(refused.status, 401);
        let push = token_for("repository%3Aapp%3Apull%2Cpush", "bob", "hunter2");
        let answer: Value = serde_json::from_slice(&push.body).unwrap();
        let bearer = format!("Bearer {}", answer["token"].as_str().unwrap());
        TinyImage::new().push(&addr, "app", "v1", &[("Authorization", &bearer)]);
        assert_eq!(registry.blob_uploads("app"), 2);
        assert_eq!(registry.token_requests(), 3);
    }

    /// Copies a [`TinyImage`] to `REPO:v1` with `skopeo copy`, checks the registry's counts
    /// and that `skopeo inspect` finds it.
    fn skopeo_round_trip(registry: &Registry, repo: &str) {
        require_tool("skopeo", "skopeo");
        let layout = tempfile::tempdir().unwrap();
        let image = TinyImage::new();
        image.write_layout(layout.path());
        let mut copy = Command::new("skopeo");
        copy.args(["copy", "--insecure-policy", "--quiet", "--preserve-digests"])
            .args(registry.skopeo_args("dest-"))
            .arg(format!("oci:{}:t", layout.path().display()))
            .arg(registry.docker_ref(repo, "v1"));
        let output = copy.output().unwrap();
        assert!(
            output.status.success(),
            "{} failed:\n{}\n{}",
            display(&copy),
            String::from_utf8_lossy(&output.stderr),
            registry.server_log()
        );
        assert_eq!(registry.blob_uploads(repo), 2);
        assert_eq!(registry.manifest_puts(repo), 1);
        let inspected = registry.inspect(repo, "v1");
        assert_eq!(inspected["Digest"], json!(digest(&image.manifest)));
    }

    #[test]
    fn tls_registry_with_token_auth_serves_skopeo_with_the_cert_dir() {
        let registry =
            Registry::start(RegistryConfig::plain().with_tls().with_token("carol", "pw"));
        skopeo_round_trip(&registry, "tls/app");
        assert!(registry.token_requests() >= 1);

        // Without the cert dir, skopeo does not trust the certificate.
        let untrusted = Command::new("skopeo")
            .args(["inspect", "--creds", "carol:pw"])
            .arg(registry.docker_ref("tls/app", "v1"))
            .output()
            .unwrap();
        assert!(!untrusted.status.success());
        let stderr = String::from_utf8_lossy(&untrusted.stderr);
        assert!(stderr.contains("certificate"), "{stderr}");
    }

    #[test]
    fn tls_registries_anonymous_and_with_htpasswd_serve_skopeo() {
        let anonymous = Registry::start(RegistryConfig::plain().with_tls());
        assert!(anonymous.cert_dir().join("ca.crt").is_file());
        skopeo_round_trip(&anonymous, "app");

        let htpasswd = Registry::start(
            RegistryConfig::plain()
                .with_tls()
                .with_htpasswd("dave", "pw"),
        );
        skopeo_round_trip(&htpasswd, "app");
        let statuses: Vec<u16> = htpasswd.requests().iter().map(|r| r.status).collect();
        assert!(
            statuses.contains(&401),
            "containers/image asks, is challenged, then logs in: {statuses:?}"
        );
    }

    #[test]
    fn stop_and_start_again_keep_port_storage_and_open_uploads() {
        let mut registry = Registry::start(RegistryConfig::plain());
        let addr = addr(&registry);
        let image = TinyImage::new();
        image.push(&addr, "app", "v1", &[]);
        let started = http(&addr, "POST", "/v2/app/blobs/uploads/", &[], b"").unwrap();
        assert_eq!(started.status, 202);

        registry.stop();
        assert!(!registry.is_running());
        assert!(http(&addr, "GET", "/v2/", &[], b"").is_err());
        assert_eq!(registry.blob_uploads("app"), 2, "the log stays readable");

        registry.start_again();
        assert_eq!(registry.url(), format!("127.0.0.1:{}", addr.port()));
        let blob = format!("/v2/app/blobs/{}", digest(&image.layer));
        assert_eq!(http(&addr, "HEAD", &blob, &[], b"").unwrap().status, 200);
        let blob = b"finished after a restart";
        let put = http(
            &addr,
            "PUT",
            &format!("{}&digest={}", location_path(&started), digest(blob)),
            &[],
            blob,
        )
        .unwrap();
        assert_eq!(put.status, 201, "{}", put.text());
        assert_eq!(registry.blob_uploads("app"), 3);
    }

    /// Sends a request on a kept-alive connection and reads its answer.
    fn exchange(
        stream: &TcpStream,
        reader: &mut BufReader<TcpStream>,
        method: &str,
        uri: &str,
        body: &[u8],
    ) -> io::Result<HttpResponse> {
        let addr = stream.peer_addr()?;
        send_request(&mut &*stream, &addr, method, uri, &[], body)?;
        read_response(reader, method)
    }

    fn connect(proxy: &FaultProxy) -> (TcpStream, BufReader<TcpStream>) {
        let stream = TcpStream::connect(proxy.url()).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        (stream, reader)
    }

    #[test]
    fn fault_proxy_counts_requests_not_connections() {
        let registry = Registry::start(RegistryConfig::plain());
        let proxy = FaultProxy::start(&registry);
        let (stream, mut reader) = connect(&proxy);

        proxy.fail_next(1, 500);
        proxy.add_rule(
            Rule::status(429)
                .method("PUT")
                .uri_contains("/blobs/uploads/"),
        );
        let failed = exchange(&stream, &mut reader, "GET", "/v2/", b"").unwrap();
        assert_eq!(failed.status, 500);
        let ok = exchange(&stream, &mut reader, "GET", "/v2/", b"").unwrap();
        assert_eq!(ok.status, 200);

        // A chunked PUT: the first one is refused with 429 after its body is read, and the
        // same connection carries the next.
        let blob = b"a blob sent in chunks";
        let post = exchange(&stream, &mut reader, "POST", "/v2/app/blobs/uploads/", b"").unwrap();
        assert_eq!(post.status, 202, "{}", post.text());
        let put_uri = format!("{}&digest={}", location_path(&post), digest(blob));
        let chunked = format!(
            "PUT {put_uri} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
             7\r\n{}\r\n{:x};ext=1\r\n{}\r\n0\r\nTrailer: yes\r\n\r\n",
            std::str::from_utf8(&blob[..7]).unwrap(),
            blob.len() - 7,
            std::str::from_utf8(&blob[7..]).unwrap(),
        );
        (&stream).write_all(chunked.as_bytes()).unwrap();
        let limited = read_response(&mut reader, "PUT").unwrap();
        assert_eq!(limited.status, 429);
        assert_eq!(limited.header("retry-after"), Some("1"));
        (&stream).write_all(chunked.as_bytes()).unwrap();
        let stored = read_response(&mut reader, "PUT").unwrap();
        assert_eq!(stored.status, 201, "{}", stored.text());

        let outcomes: Vec<Outcome> = proxy.requests().iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Answered(500),
                Outcome::Forwarded,
                Outcome::Forwarded,
                Outcome::Answered(429),
                Outcome::Forwarded,
            ]
        );
        assert_eq!(registry.blob_uploads("app"), 1);
        assert_eq!(registry.requests().len(), 3, "{:?}", registry.requests());
    }

    #[test]
    fn fault_proxy_cuts_and_stops_and_resumes() {
        let registry = Registry::start(RegistryConfig::plain());
        let proxy = FaultProxy::start(&registry);
        let (stream, mut reader) = connect(&proxy);
        proxy.cut_after(1);
        assert_eq!(
            exchange(&stream, &mut reader, "GET", "/v2/", b"")
                .unwrap()
                .status,
            200
        );
        assert!(exchange(&stream, &mut reader, "GET", "/v2/", b"").is_err());
        let (stream, mut reader) = connect(&proxy);
        assert!(exchange(&stream, &mut reader, "GET", "/v2/", b"").is_err());

        proxy.resume();
        let (stream, mut reader) = connect(&proxy);
        assert_eq!(
            exchange(&stream, &mut reader, "GET", "/v2/", b"")
                .unwrap()
                .status,
            200
        );
        proxy.stop_forwarding();
        assert!(exchange(&stream, &mut reader, "GET", "/v2/", b"").is_err());
        let (stream, mut reader) = connect(&proxy);
        assert!(exchange(&stream, &mut reader, "GET", "/v2/", b"").is_err());

        proxy.resume();
        proxy.add_rule(Rule::cut().method("HEAD"));
        let (stream, mut reader) = connect(&proxy);
        assert!(exchange(&stream, &mut reader, "HEAD", "/v2/", b"").is_err());
        let (stream, mut reader) = connect(&proxy);
        assert_eq!(
            exchange(&stream, &mut reader, "HEAD", "/v2/", b"")
                .unwrap()
                .status,
            200
        );
        assert_eq!(registry.requests().len(), 3);
    }

    #[test]
    fn fault_proxy_holds_uploads_until_resumed() {
        let registry = Registry::start(RegistryConfig::plain());
        let proxy = FaultProxy::start(&registry);
        proxy.hold_uploads();
        let (stream, mut reader) = connect(&proxy);
        assert_eq!(
            exchange(&stream, &mut reader, "GET", "/v2/", b"")
                .unwrap()
                .status,
            200
        );
        let upload = thread::spawn(move || {
            exchange(&stream, &mut reader, "POST", "/v2/app/blobs/uploads/", b"")
                .unwrap()
                .status
        });
        crate::wait_for("a held upload", Duration::from_secs(5), || {
            proxy.held() == 1
        });
        assert_eq!(registry.blob_uploads("app"), 0);
        assert!(registry.requests().iter().all(|r| r.method == "GET"));
        proxy.resume();
        assert_eq!(upload.join().unwrap(), 202);
        assert_eq!(proxy.held(), 0);
        let outcomes: Vec<Outcome> = proxy.requests().iter().map(|r| r.outcome).collect();
        assert_eq!(outcomes, [Outcome::Forwarded, Outcome::Held]);
    }

    #[test]
    fn logged_requests_parse_the_combined_format() {
        let line = r#"127.0.0.1 - alice [07/Dec/2026:21:43:15 +0000] "POST /v2/a/b/blobs/uploads/?mount=sha256:00&from=c HTTP/1.1" 201 0 "" "skopeo/1.9.3""#;
        let request = LoggedRequest::parse(line).unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path(), "/v2/a/b/blobs/uploads/");
        assert_eq!(request.query(), "mount=sha256:00&from=c");
        assert!(request.has_param("mount") && !request.has_param("digest"));
        assert_eq!(request.status, 201);
        assert_eq!(
            percent_decode("repository%3Aa%2Fb%3Apull%2Cpush"),
            "repository:a/b:pull,push"
        );
        assert_eq!(percent_decode("100%"), "100%");
    }
}
