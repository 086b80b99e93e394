//! One blob being uploaded: buffered up to a chunk, then sent in one `PUT` or in `PATCH`
//! chunks closed by a `PUT`.

use std::io::{self, Write};

use buildimage_archive::{BlobWriter, Result};
use ureq::http::Method;

use super::{Registry, check_digest, http};

/// An upload session the registry opened.
struct Session {
    /// Where the next request goes (each answer names the next).
    location: String,
    /// How many bytes the registry has taken.
    offset: u64,
}

/// A blob being written to a [`Registry`]: at most one chunk is held in memory.
pub(crate) struct Upload<'r> {
    registry: &'r mut Registry,
    buffer: Vec<u8>,
    session: Option<Session>,
    written: u64,
    failed: bool,
}

impl<'r> Upload<'r> {
    pub(crate) fn new(registry: &'r mut Registry) -> Upload<'r> {
        Upload {
            buffer: Vec::with_capacity(registry.chunk_size.min(1 << 20)),
            registry,
            session: None,
            written: 0,
            failed: false,
        }
    }

    /// Sends the buffer as the next chunk, opening the session first if needed.
    fn send_chunk(&mut self) -> Result<()> {
        let what = format!(
            "uploading a blob (bytes from {})",
            self.written - self.buffer.len() as u64
        );
        let mut session = match self.session.take() {
            Some(session) => session,
            None => Session {
                location: self.registry.start_session(&what)?,
                offset: 0,
            },
        };
        let end = session.offset + self.buffer.len() as u64;
        let mut call =
            self.registry
                .call(Method::PATCH, session.location.clone(), Some(&self.buffer));
        call.headers
            .push(("content-type", "application/octet-stream".to_owned()));
        call.headers
            .push(("content-range", format!("{}-{}", session.offset, end - 1)));
        // Until the chunk is taken, the session is ours to delete if this fails.
        self.session = Some(Session {
            location: session.location.clone(),
            offset: session.offset,
        });
        let reply = self.registry.client.send(&call, &what)?;
        session.location = self.registry.expect_location(&call, &reply, 202, &what)?;
        session.offset = end;
        self.session = Some(session);
        self.buffer.clear();
        Ok(())
    }
}

impl Write for Upload<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("the blob's upload failed before"));
        }
        if self.buffer.len() >= self.registry.chunk_size
            && let Err(error) = self.send_chunk()
        {
            self.failed = true;
            return Err(io::Error::other(error));
        }
        let room = self.registry.chunk_size - self.buffer.len();
        let taken = buf.len().min(room);
        self.buffer.extend_from_slice(&buf[..taken]);
        self.written += taken as u64;
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWriter for Upload<'_> {
    fn commit(mut self: Box<Self>, digest: &str, size: u64) -> Result<bool> {
        check_digest(digest)?;
        let what = format!("uploading blob {digest}");
        if self.failed {
            return Err(self
                .registry
                .client
                .fail(&what, "an earlier chunk failed", None));
        }
        if self.written != size {
            return Err(self.registry.client.fail(
                &what,
                &format!("{size} bytes were announced but {} written", self.written),
                None,
            ));
        }
        if self.session.is_none() {
            if self.registry.blob_exists(digest, size)? {
                return Ok(false);
            }
            let location = self.registry.start_session(&what)?;
            self.session = Some(Session {
                location,
                offset: 0,
            });
        }
        let location = self
            .session
            .as_ref()
            .map(|s| s.location.clone())
            .unwrap_or_default();
        let url = http::append_query(&location, "digest", digest);
        let mut call = self.registry.call(Method::PUT, url, Some(&self.buffer));
        call.headers
            .push(("content-type", "application/octet-stream".to_owned()));
        let reply = self.registry.client.send(&call, &what)?;
        if reply.status.as_u16() != 201 {
            return Err(self
                .registry
                .client
                .status_error(&what, "PUT", &reply, None));
        }
        self.session = None;
        match reply.header("docker-content-digest") {
            Some(answered) if answered != digest => Err(self.registry.client.fail(
                &what,
                &format!("the registry stored it as {answered}"),
                None,
            )),
            _ => Ok(true),
        }
    }
}

impl Drop for Upload<'_> {
    /// Abandons a session left open (the blob was not committed, or failed): the
    /// registry would otherwise keep its bytes until it purges old uploads.
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let call = self.registry.call(Method::DELETE, session.location, None);
            self.registry.client.send_quietly(&call);
        }
    }
}
