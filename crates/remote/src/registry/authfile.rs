//! Credentials for a registry: `--creds`, or the auth files podman, skopeo and Docker
//! write (`auth.json`, `~/.docker/config.json`) with their credential helpers.
//!
//! Written here rather than taken from a crate: the crates available read only
//! `~/.docker/config.json`, not containers' lookup order (`$REGISTRY_AUTH_FILE`,
//! `$XDG_RUNTIME_DIR/containers/auth.json`, …), its namespace keys, or credential helpers.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use buildimage_archive::{Error, Result};
use data_encoding::BASE64;
use serde::Deserialize;

use super::destination;
use super::reference::DOCKER_HUB;

/// The key Docker writes Docker Hub's credentials under, and the server name its
/// credential helpers know Docker Hub by.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The most an auth file may hold; a larger one is not an auth file.
const MAX_AUTH_FILE: u64 = 16 << 20;

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Credentials {
    /// Parses `USER:PASSWORD` (the password may hold `:`). `USER` alone is an error:
    /// there is no terminal to ask the password on.
    pub fn parse(creds: &str) -> Result<Credentials, String> {
        let Some((username, password)) = creds.split_once(':') else {
            return Err(format!(
                "Credentials `{creds}` have no password: give USER:PASSWORD (a password \
                 cannot be asked for interactively)"
            ));
        };
        if username.is_empty() {
            return Err("Credentials have an empty user name: give USER:PASSWORD".to_owned());
        }
        Ok(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }

    /// The `Authorization` header value for HTTP Basic authentication.
    pub fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", BASE64.encode(pair.as_bytes()))
    }
}

/// The environment the auth file lookup reads, passed explicitly so that it can be
/// tested without changing the process's environment.
#[derive(Debug, Clone, Default)]
pub struct AuthEnv {
    /// `$REGISTRY_AUTH_FILE`.
    pub registry_auth_file: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<PathBuf>,
    /// `$DOCKER_CONFIG`, the folder of Docker's `config.json`.
    pub docker_config: Option<PathBuf>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$PATH`, where credential helpers are looked for.
    pub path: Option<OsString>,
}

impl AuthEnv {
    /// The values of this process's environment (empty variables count as unset).
    pub fn from_process() -> AuthEnv {
        let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        AuthEnv {
            registry_auth_file: var("REGISTRY_AUTH_FILE").map(PathBuf::from),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            docker_config: var("DOCKER_CONFIG").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            path: var("PATH"),
        }
    }

    /// The auth files to try, in containers/image's order: `$REGISTRY_AUTH_FILE`,
    /// `$XDG_RUNTIME_DIR/containers/auth.json`, `$XDG_CONFIG_HOME/containers/auth.json`
    /// (default `~/.config`), `$DOCKER_CONFIG/config.json` (default `~/.docker`).
    pub fn auth_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        files.extend(self.registry_auth_file.clone());
        if let Some(runtime) = &self.xdg_runtime_dir {
            files.push(runtime.join("containers/auth.json"));
        }
        let config_home = (self.xdg_config_home.clone())
            .or_else(|| self.home.as_ref().map(|home| home.join(".config")));
        if let Some(config_home) = config_home {
            files.push(config_home.join("containers/auth.json"));
        }
        let docker = (self.docker_config.clone())
            .or_else(|| self.home.as_ref().map(|home| home.join(".docker")));
        if let Some(docker) = docker {
            files.push(docker.join("config.json"));
        }
        files
    }
}

/// Finds the credentials for `repository` on `registry` (`host[:port]`, `docker.io`
/// for Docker Hub): in `authfile` only when given (it must exist), else in the first of
/// [`AuthEnv::auth_files`] that has them. `None` means anonymous.
pub fn find_credentials(
    registry: &str,
    repository: &str,
    authfile: Option<&Path>,
    env: &AuthEnv,
) -> Result<Option<Credentials>> {
    if let Some(file) = authfile {
        let parsed = read_auth_file(file)?.ok_or_else(|| {
            destination(format!("Auth file {} does not exist", file.display()), None)
        })?;
        return parsed.credentials(registry, repository, file, env);
    }
    for file in env.auth_files() {
        if let Some(parsed) = read_auth_file(&file)?
            && let Some(found) = parsed.credentials(registry, repository, &file, env)?
        {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// An auth file: `auth.json` or Docker's `config.json` (other keys ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuthFile {
    auths: BTreeMap<String, AuthEntry>,
    #[serde(rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(rename = "credsStore")]
    creds_store: Option<String>,
}

/// One `auths` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// Reads and parses `file`; `None` if it does not exist.
fn read_auth_file(file: &Path) -> Result<Option<AuthFile>> {
    let bytes = match fs_err::metadata(file) {
        Ok(meta) if meta.len() > MAX_AUTH_FILE => {
            return Err(destination(
                format!(
                    "Auth file {} is larger than {MAX_AUTH_FILE} bytes",
                    file.display()
                ),
                None,
            ));
        }
        Ok(_) => fs_err::read(file),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => Err(error),
    }
    .map_err(|error| Error::io("read", file, error))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(AuthFile::default()));
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|error| {
        destination(
            format!("Auth file {} is not valid JSON", file.display()),
            Some(Box::new(error)),
        )
    })
}

/// Splits an `auths` key into host and path: `https://` and `http://` go, and a path
/// of `v1`/`v2` (`https://index.docker.io/v1/`) is no namespace.
fn split_key(key: &str) -> (&str, &str) {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (host, path) = key.split_once('/').unwrap_or((key, ""));
    let path = path.trim_end_matches('/');
    match path {
        "v1" | "v2" => (host, ""),
        _ => (host, path),
    }
}

/// Whether `host` (from a key) names `registry`; Docker Hub goes by several names.
fn same_registry(host: &str, registry: &str) -> bool {
    let hub = |name: &str| {
        matches!(
            name,
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        )
    };
    host == registry || (registry == DOCKER_HUB && hub(host))
}

impl AuthFile {
    /// The credentials this file (read from `file`) gives for `repository` on
    /// `registry`: its credential helper for the registry, its most specific `auths`
    /// entry, or its default `credsStore`.
    fn credentials(
        &self,
        registry: &str,
        repository: &str,
        file: &Path,
        env: &AuthEnv,
    ) -> Result<Option<Credentials>> {
        let helper = self.cred_helpers.iter().find(|(key, _)| {
            split_key(key).1.is_empty() && same_registry(split_key(key).0, registry)
        });
        if let Some((_, helper)) = helper {
            return run_helper(helper, registry, file, env);
        }
        if let Some((key, entry)) = self.best_entry(registry, repository)
            && let Some(found) = entry.decode(key, file)?
        {
            return Ok(Some(found));
        }
        match &self.creds_store {
            Some(store) if !store.is_empty() => run_helper(store, registry, file, env),
            _ => Ok(None),
        }
    }

    /// The `auths` entry for `repository` on `registry`: a namespace key
    /// (`quay.io/org`) that holds the repository, the longest first, else a host key.
    fn best_entry(&self, registry: &str, repository: &str) -> Option<(&str, &AuthEntry)> {
        self.auths
            .iter()
            .filter_map(|(key, entry)| {
                let (host, path) = split_key(key);
                let holds = path.is_empty()
                    || repository == path
                    || repository.starts_with(&format!("{path}/"));
                (same_registry(host, registry) && holds).then_some((path.len(), key, entry))
            })
            .max_by_key(|(len, key, _)| (*len, key.starts_with("https://") || !key.contains("://")))
            .map(|(_, key, entry)| (key.as_str(), entry))
    }
}

impl AuthEntry {
    /// The entry's credentials: `auth` (base64 of `user:password`), else `username` and
    /// `password`; `None` for an empty entry (Docker writes `{}` when a helper holds
    /// the secret).
    fn decode(&self, key: &str, file: &Path) -> Result<Option<Credentials>> {
        let invalid = |reason: String| {
            destination(
                format!("Auth file {}, entry {key}: {reason}", file.display()),
                None,
            )
        };
        if let Some(auth) = self.auth.as_deref().filter(|auth| !auth.is_empty()) {
            let decoded = BASE64
                .decode(auth.trim().as_bytes())
                .map_err(|error| invalid(format!("`auth` is not base64 ({error})")))?;
            let pair = String::from_utf8(decoded)
                .map_err(|_| invalid("`auth` does not decode to UTF-8 text".to_owned()))?;
            let (username, password) = pair
                .split_once(':')
                .ok_or_else(|| invalid("`auth` does not decode to USER:PASSWORD".to_owned()))?;
            return Ok(Some(Credentials {
                username: username.to_owned(),
                password: password.to_owned(),
            }));
        }
        if let (Some(username), Some(password)) = (&self.username, &self.password)
            && !username.is_empty()
        {
            return Ok(Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            }));
        }
        if self.identitytoken.as_deref().is_some_and(|t| !t.is_empty()) {
            return Err(invalid(
                "holds an identity token (OAuth), which buildimage cannot use; log in with a \
                 password or access token"
                    .to_owned(),
            ));
        }
        Ok(None)
    }
}

/// What a credential helper's `get` prints.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Finds `program` in the folders of `path`.
fn find_program(program: &str, path: Option<&OsString>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|folder| folder.join(program))
        .find(|candidate| candidate.is_file())
}

/// Runs `docker-credential-<helper> get` (named in `file`) for `registry`: the server
/// name on standard input, `{"Username","Secret"}` on standard output. "credentials not
/// found" means anonymous.
fn run_helper(
    helper: &str,
    registry: &str,
    file: &Path,
    env: &AuthEnv,
) -> Result<Option<Credentials>> {
    let program = format!("docker-credential-{helper}");
    let fail = |reason: String, source: Option<Box<dyn std::error::Error + Send + Sync>>| {
        destination(
            format!(
                "Credential helper {program} (named in {}) for {registry}: {reason}",
                file.display()
            ),
            source,
        )
    };
    let path = find_program(&program, env.path.as_ref())
        .ok_or_else(|| fail("not found on PATH".to_owned(), None))?;
    let server = if registry == DOCKER_HUB {
        DOCKER_HUB_KEY
    } else {
        registry
    };
    let mut command = Command::new(&path);
    command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(search) = &env.path {
        command.env("PATH", search);
    }
    let mut child = command
        .spawn()
        .map_err(|error| fail("cannot run it".to_owned(), Some(Box::new(error))))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading closes the pipe: its exit status says why.
        let _ = stdin.write_all(server.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|error| fail("cannot run it".to_owned(), Some(Box::new(error))))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let said = format!("{} {}", stdout.trim(), stderr.trim());
        if said.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(
            format!("it failed ({}): {}", output.status, said.trim()),
            None,
        ));
    }
    let answer: HelperAnswer = serde_json::from_str(&stdout).map_err(|error| {
        fail(
            "its answer is not {\"Username\", \"Secret\"} JSON".to_owned(),
            Some(Box::new(error)),
        )
    })?;
    if answer.username == "<token>" {
        return Err(fail(
            "it holds an identity token (OAuth), which buildimage cannot use".to_owned(),
            None,
        ));
    }
    Ok(Some(Credentials {
        username: answer.username,
        password: answer.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)] // compared with what the lookup answers
    fn creds(username: &str, password: &str) -> Option<Credentials> {
        Some(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }

    fn auth(user_pass: &str) -> String {
        BASE64.encode(user_pass.as_bytes())
    }

    fn write(path: &Path, text: &str) {
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, text).unwrap();
    }

    #[test]
    fn parse_creds() {
        assert_eq!(Credentials::parse("u:p:q").ok(), creds("u", "p:q"));
        let error = Credentials::parse("alice").unwrap_err();
        assert!(error.contains("have no password"), "{error}");
        assert!(Credentials::parse(":p").is_err());
        assert_eq!(creds("u", "p").unwrap().basic(), "Basic dTpw");
        assert!(!format!("{:?}", creds("u", "secret")).contains("secret"));
    }

    #[test]
    fn lookup_order_first_file_with_an_entry_wins() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let runtime = dir.path().join("run");
        write(
            &runtime.join("containers/auth.json"),
            &format!(r#"{{"auths":{{"other.io":{{"auth":"{}"}}}}}}"#, auth("o:o")),
        );
        write(
            &home.join(".docker/config.json"),
            &format!(
                r#"{{"auths":{{"https://reg.io:5000/v2/":{{"auth":"{}"}},"{DOCKER_HUB_KEY}":{{"username":"hub","password":"pw"}}}}}}"#,
                auth("docker:user")
            ),
        );
        let env = AuthEnv {
            xdg_runtime_dir: Some(runtime.clone()),
            home: Some(home.clone()),
            ..AuthEnv::default()
        };
        assert_eq!(
            find_credentials("other.io", "a", None, &env).unwrap(),
            creds("o", "o")
        );
        assert_eq!(
            find_credentials("reg.io:5000", "a", None, &env).unwrap(),
            creds("docker", "user")
        );
        assert_eq!(
            find_credentials("docker.io", "library/busybox", None, &env).unwrap(),
            creds("hub", "pw")
        );
        assert_eq!(find_credentials("reg.io", "a", None, &env).unwrap(), None);

        // $REGISTRY_AUTH_FILE comes first; a missing one is skipped.
        let first = dir.path().join("first.json");
        write(
            &first,
            &format!(
                r#"{{"auths":{{"reg.io:5000":{{"auth":"{}"}}}}}}"#,
                auth("a:b")
            ),
        );
        let env = AuthEnv {
            registry_auth_file: Some(first.clone()),
            ..env
        };
        assert_eq!(
            find_credentials("reg.io:5000", "a", None, &env).unwrap(),
            creds("a", "b")
        );
        let missing = AuthEnv {
            registry_auth_file: Some(dir.path().join("missing.json")),
            ..env.clone()
        };
        assert_eq!(
            find_credentials("other.io", "a", None, &missing).unwrap(),
            creds("o", "o")
        );

        // An explicit file is the only one read, and must exist.
        assert_eq!(
            find_credentials("other.io", "a", Some(&first), &env).unwrap(),
            None
        );
        let error = find_credentials("x.io", "a", Some(&dir.path().join("nope.json")), &env)
            .unwrap_err()
            .to_string();
        assert!(error.contains("nope.json does not exist"), "{error}");
    }

    #[test]
    fn namespace_keys_most_specific_first() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        write(
            &file,
            &format!(
                r#"{{"auths":{{"quay.io":{{"auth":"{}"}},"quay.io/org":{{"auth":"{}"}},"quay.io/org/app":{{"auth":"{}"}}}}}}"#,
                auth("host:1"),
                auth("org:2"),
                auth("app:3")
            ),
        );
        let env = AuthEnv::default();
        let find = |repo| find_credentials("quay.io", repo, Some(&file), &env).unwrap();
        assert_eq!(find("org/app"), creds("app", "3"));
        assert_eq!(find("org/other"), creds("org", "2"));
        assert_eq!(find("organic/x"), creds("host", "1"));
    }

    #[test]
    fn broken_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        write(&file, "{ not json");
        let error = find_credentials("r.io", "a", Some(&file), &AuthEnv::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("auth.json is not valid JSON"), "{error}");
        write(&file, r#"{"auths":{"r.io":{"auth":"!!!"}}}"#);
        let error = find_credentials("r.io", "a", Some(&file), &AuthEnv::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("entry r.io: `auth` is not base64"),
            "{error}"
        );
    }

    /// Writes `docker-credential-test` into `bin`: it knows `reg.io` and Docker Hub.
    fn helper(bin: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let script = bin.join("docker-credential-test");
        write(
            &script,
            "#!/bin/sh\n\
             [ \"$1\" = get ] || exit 2\n\
             read -r server || true\n\
             case \"$server\" in\n\
             reg.io) echo '{\"ServerURL\":\"reg.io\",\"Username\":\"helper\",\"Secret\":\"s3cret\"}' ;;\n\
             https://index.docker.io/v1/) echo '{\"Username\":\"hub\",\"Secret\":\"tok\"}' ;;\n\
             broken.io) echo 'boom' >&2; exit 3 ;;\n\
             *) echo 'credentials not found in native keychain'; exit 1 ;;\n\
             esac\n",
        );
        fs_err::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn credential_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        helper(&bin);
        let file = dir.path().join("config.json");
        write(
            &file,
            r#"{"auths":{"reg.io":{}},"credHelpers":{"docker.io":"test","broken.io":"test","gone.io":"absent"},"credsStore":"test"}"#,
        );
        let env = AuthEnv {
            path: Some(
                std::env::join_paths([&bin, Path::new("/usr/bin"), Path::new("/bin")]).unwrap(),
            ),
            ..AuthEnv::default()
        };
        let find = |registry| find_credentials(registry, "a/b", Some(&file), &env);
        assert_eq!(find("reg.io").unwrap(), creds("helper", "s3cret"));
        assert_eq!(find("docker.io").unwrap(), creds("hub", "tok"));
        assert_eq!(find("unknown.io").unwrap(), None);
        let error = find("broken.io").unwrap_err().to_string();
        assert!(
            error.contains("docker-credential-test") && error.contains("boom"),
            "{error}"
        );
        let error = find("gone.io").unwrap_err().to_string();
        assert!(error.contains("docker-credential-absent"), "{error}");
        assert!(error.contains("not found on PATH"), "{error}");
    }
}
