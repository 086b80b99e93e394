//! Loading an image into the Docker engine: a docker-archive streamed into
//! `POST /images/load` on the engine's API socket, as `docker load` does, with no file in
//! between.
//!
//! The request body is sent with chunked transfer encoding as the archive is written;
//! the engine answers once it has read the whole archive, with a stream of JSON messages
//! (`{"stream": "Loaded image: …"}` or `{"error": …}`). A build that fails or is
//! interrupted closes the connection without the last chunk, and the engine loads
//! nothing.
//!
//! The client is a few dozen lines of HTTP/1.1 over a Unix or TCP socket: the engine's
//! API needs no more, and an HTTP library would bring no TLS we could use here (a TLS
//! engine endpoint is refused with a clear message).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use buildimage_archive::{Error, Result};
use buildimage_layer::Cancel;

/// Where the engine listens when `DOCKER_HOST` is not set.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Bytes collected into one chunk of the request body.
const CHUNK: usize = 256 * 1024;

/// How long the engine may take to answer once the archive is sent (it unpacks every
/// layer first).
const ANSWER_TIMEOUT: Duration = Duration::from_hours(1);

/// The engine's API endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket.
    Unix(PathBuf),
    /// Plain TCP: `host:port`.
    Tcp(String),
}

impl Endpoint {
    /// The endpoint `DOCKER_HOST` names (`unix:///path`, `tcp://host:port`), or the
    /// default socket when it is `None` or empty. TLS endpoints are refused.
    pub fn from_docker_host(host: Option<&str>, tls_verify: Option<&str>) -> Result<Self> {
        let host = host.filter(|h| !h.is_empty()).unwrap_or(DEFAULT_HOST);
        if let Some(path) = host.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(invalid(host, "names no socket"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(address) = host.strip_prefix("tcp://") {
            if tls_verify.is_some_and(|v| !v.is_empty() && v != "0") {
                return Err(invalid(
                    host,
                    "DOCKER_TLS_VERIFY is set, and loading over TLS is not supported; \
                     use the engine's Unix socket",
                ));
            }
            let address = address.trim_end_matches('/');
            if address.is_empty() {
                return Err(invalid(host, "names no address"));
            }
            let with_port = if address
                .rsplit_once(':')
                .is_some_and(|(_, p)| !p.contains(']'))
            {
                address.to_owned()
            } else {
                format!("{address}:2375")
            };
            return Ok(Endpoint::Tcp(with_port));
        }
        Err(invalid(
            host,
            "expected unix:///path/to/docker.sock or tcp://host:port",
        ))
    }

    /// The endpoint of the environment's `DOCKER_HOST` and `DOCKER_TLS_VERIFY`.
    pub fn from_env() -> Result<Self> {
        let host = std::env::var("DOCKER_HOST").ok();
        let tls = std::env::var("DOCKER_TLS_VERIFY").ok();
        Self::from_docker_host(host.as_deref(), tls.as_deref())
    }

    fn connect(&self, cancel: &Cancel) -> io::Result<Connection> {
        let stream = match self {
            Endpoint::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
            Endpoint::Tcp(address) => Stream::Tcp(TcpStream::connect(address)?),
        };
        Connection::new(stream, cancel.clone())
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Tcp(address) => write!(f, "tcp://{address}"),
        }
    }
}

fn invalid(host: &str, reason: &str) -> Error {
    Error::Destination {
        message: format!("DOCKER_HOST={host}: {reason}"),
        source: None,
    }
}

/// A connection to the engine whose every wait can be cut short: reads and writes wait
/// in slices of [`SLICE`] and give up with [`io::ErrorKind::Interrupted`] once the build's
/// [`Cancel`] is set, so that SIGINT stops a load promptly even while the engine is busy.
struct Connection {
    stream: Stream,
    cancel: Cancel,
    /// How long a read may wait in all before it fails.
    read_limit: Duration,
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// How long one wait on the socket lasts before the cancel flag is looked at again.
const SLICE: Duration = Duration::from_millis(100);

/// How long the engine may take to take the next bytes of the archive.
const WRITE_LIMIT: Duration = Duration::from_mins(5);

impl Connection {
    fn new(stream: Stream, cancel: Cancel) -> io::Result<Self> {
        match &stream {
            Stream::Unix(s) => {
                s.set_read_timeout(Some(SLICE))?;
                s.set_write_timeout(Some(SLICE))?;
            }
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(SLICE))?;
                s.set_write_timeout(Some(SLICE))?;
            }
        }
        Ok(Connection {
            stream,
            cancel,
            read_limit: WRITE_LIMIT,
        })
    }

    /// Runs `io` until it does not time out, the cancel flag is set, or `limit` passed.
    fn patiently<T>(
        cancel: &Cancel,
        limit: Duration,
        mut io: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        let start = Instant::now();
        loop {
            match io() {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if cancel.is_cancelled() {
                        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
                    }
                    if start.elapsed() > limit {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no progress in {} s", limit.as_secs()),
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted && !cancel.is_cancelled() => {}
                other => return other,
            }
        }
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let stream = &mut self.stream;
        Self::patiently(&self.cancel, self.read_limit, || match stream {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        })
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let stream = &mut self.stream;
        Self::patiently(&self.cancel, WRITE_LIMIT, || match stream {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        })
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stream {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

/// An image load in progress: write the docker-archive into it, then [`Load::finish`].
/// Dropped unfinished, it closes the connection mid-body and the engine loads nothing.
pub struct Load {
    conn: Connection,
    endpoint: Endpoint,
    chunk: Vec<u8>,
}

/// What the engine said it loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Each `Loaded image: …` (or `Loaded image ID: …`) message.
    pub messages: Vec<String>,
}

impl Load {
    /// Connects to `endpoint` and starts the request; every wait on the engine ends
    /// promptly once `cancel` is set.
    pub fn start(endpoint: &Endpoint, cancel: &Cancel) -> Result<Self> {
        let mut conn = endpoint.connect(cancel).map_err(|e| Error::Destination {
            message: format!("Cannot connect to the Docker engine at {endpoint} (is dockerd running? DOCKER_HOST selects another)"),
            source: Some(Box::new(e)),
        })?;
        let head = "POST /images/load?quiet=1 HTTP/1.1\r\nHost: docker\r\n\
                    User-Agent: buildimage\r\nContent-Type: application/x-tar\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
        conn.write_all(head.as_bytes())
            .map_err(|e| failed(endpoint, "sending the request", e))?;
        Ok(Load {
            conn,
            endpoint: endpoint.clone(),
            chunk: Vec::with_capacity(CHUNK),
        })
    }

    fn send_chunk(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        write!(self.conn, "{:x}\r\n", self.chunk.len())?;
        self.conn.write_all(&self.chunk)?;
        self.conn.write_all(b"\r\n")?;
        self.chunk.clear();
        Ok(())
    }

    /// Ends the body and reads the engine's answer: `Ok` with its messages when the image
    /// was loaded, an error with the engine's message otherwise.
    pub fn finish(mut self) -> Result<Loaded> {
        let endpoint = self.endpoint.clone();
        let sent = self
            .send_chunk()
            .and_then(|()| self.conn.write_all(b"0\r\n\r\n"))
            .and_then(|()| self.conn.flush());
        self.conn.read_limit = ANSWER_TIMEOUT;
        let answer = read_response(&mut BufReader::new(&mut self.conn));
        match (sent, answer) {
            (_, Ok((status, body))) => interpret(&endpoint, status, &body),
            (Err(e), Err(_)) => Err(failed(&endpoint, "sending the image", e)),
            (Ok(()), Err(e)) => Err(failed(&endpoint, "reading the answer", e)),
        }
    }
}

/// How long the engine's answer is waited for after it stopped reading the archive.
const EXPLAIN_WAIT: Duration = Duration::from_secs(2);

impl Load {
    /// The engine stopped taking the archive (`error`, a broken pipe): it usually said
    /// why before closing. Its message, if it sent one, replaces the bare I/O error.
    fn explain(&mut self, error: io::Error) -> io::Error {
        self.conn.read_limit = EXPLAIN_WAIT;
        match read_response(&mut BufReader::new(&mut self.conn)) {
            Ok((status, body)) => match interpret(&self.endpoint, status, &body) {
                Err(said) => io::Error::other(said.to_string()),
                Ok(_) => error,
            },
            Err(_) => error,
        }
    }
}

impl Write for Load {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == CHUNK
            && let Err(e) = self.send_chunk()
        {
            return Err(self.explain(e));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn failed(endpoint: &Endpoint, doing: &str, e: io::Error) -> Error {
    Error::Destination {
        message: format!("Loading into the Docker engine at {endpoint} failed while {doing}"),
        source: Some(Box::new(e)),
    }
}

/// Reads an HTTP/1.1 response: its status and its body (chunked, sized, or to the end).
fn read_response(reader: &mut impl BufRead) -> io::Result<(u16, Vec<u8>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP answer: {:?}", line.trim_end())))?;
    let mut chunked = false;
    let mut length = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<u64>().ok();
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = line.trim_end().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| io::Error::other(format!("bad chunk size {size:?}")))?;
            if size == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else if let Some(length) = length {
        reader.take(length).read_to_end(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok((status, body))
}

/// The outcome of a load from the engine's answer.
fn interpret(endpoint: &Endpoint, status: u16, body: &[u8]) -> Result<Loaded> {
    let text = String::from_utf8_lossy(body);
    if status != 200 {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        return Err(Error::Destination {
            message: format!("The Docker engine at {endpoint} answered {status}: {message}"),
            source: None,
        });
    }
    let mut messages = Vec::new();
    for value in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>() {
        let value = value.map_err(|e| Error::Destination {
            message: format!("The Docker engine at {endpoint} gave an answer that is not JSON"),
            source: Some(Box::new(e)),
        })?;
        if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
            return Err(Error::Destination {
                message: format!("The Docker engine at {endpoint} did not load the image: {error}"),
                source: None,
            });
        }
        if let Some(stream) = value.get("stream").and_then(|s| s.as_str()) {
            let stream = stream.trim();
            if !stream.is_empty() {
                messages.push(stream.to_owned());
            }
        }
    }
    Ok(Loaded { messages })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_forms() {
        assert_eq!(
            Endpoint::from_docker_host(None, None).unwrap(),
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            Endpoint::from_docker_host(Some("unix:///tmp/d.sock"), None).unwrap(),
            Endpoint::Unix("/tmp/d.sock".into())
        );
        assert_eq!(
            Endpoint::from_docker_host(Some("tcp://127.0.0.1"), Some("")).unwrap(),
            Endpoint::Tcp("127.0.0.1:2375".into())
        );
        assert_eq!(
            Endpoint::from_docker_host(Some("tcp://127.0.0.1:9999/"), None).unwrap(),
            Endpoint::Tcp("127.0.0.1:9999".into())
        );
        let err = Endpoint::from_docker_host(Some("tcp://h:1"), Some("1")).unwrap_err();
        assert!(err.to_string().contains("DOCKER_TLS_VERIFY"), "{err}");
        let err = Endpoint::from_docker_host(Some("ssh://h"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "DOCKER_HOST=ssh://h: expected unix:///path/to/docker.sock or tcp://host:port"
        );
    }

    #[test]
    fn an_engine_that_stops_reading_is_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("engine.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let engine = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = [0; 4096];
            let _ = conn.read(&mut head).unwrap();
            let body = r#"{"errorDetail":{"message":"bad archive"},"error":"bad archive"}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(answer.as_bytes()).unwrap();
            // Closed without reading the archive, as the engine does on a broken one.
            conn.shutdown(std::net::Shutdown::Both).unwrap();
        });
        let endpoint = Endpoint::Unix(socket);
        let mut load = Load::start(&endpoint, &Cancel::new()).unwrap();
        engine.join().unwrap();
        let chunk = vec![0u8; CHUNK];
        let err = (0..64)
            .find_map(|_| load.write_all(&chunk).err())
            .expect("the engine stopped reading");
        assert!(
            err.to_string()
                .contains("did not load the image: bad archive"),
            "{err}"
        );
    }

    #[test]
    fn answers_are_read_and_interpreted() {
        let endpoint = Endpoint::Unix("/s".into());
        let json = r#"{"stream":"Loaded image: a:b\n"}"#;
        let raw = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{json}\r\n0\r\n\r\n",
            json.len()
        );
        let raw = raw.as_bytes();
        let (status, body) = read_response(&mut &raw[..]).unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            interpret(&endpoint, status, &body).unwrap().messages,
            ["Loaded image: a:b"]
        );
        let err = interpret(
            &endpoint,
            200,
            br#"{"errorDetail":{"message":"bad"},"error":"unexpected EOF"}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "The Docker engine at unix:///s did not load the image: unexpected EOF"
        );
        let raw =
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 17\r\n\r\n{\"message\":\"no\"}";
        let (status, body) = read_response(&mut &raw[..]).unwrap();
        let err = interpret(&endpoint, status, &body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "The Docker engine at unix:///s answered 500: no"
        );
    }
}
