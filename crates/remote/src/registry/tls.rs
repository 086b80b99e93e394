//! TLS settings for a registry, as containers/image reads them from a certificate
//! folder: `*.crt` files are extra certificate authorities, `*.cert` with the `*.key` of
//! the same name a client certificate.
//!
//! A server certificate that is byte for byte one of the folder's `*.crt` certificates
//! is trusted as itself (pinned), as Go's crypto/x509 does for skopeo and Docker: a
//! self-signed registry certificate made by `openssl req -x509` is marked `CA:TRUE`,
//! and webpki refuses a CA certificate as the server's own. A pinned certificate must
//! still name the host, be within its validity period, allow server authentication if
//! it lists purposes, and sign the handshake; any other certificate is verified by
//! webpki against Mozilla's roots and the folder's. ureq's [`TlsConfig`] takes no
//! rustls verifier, so with `*.crt` files the agent's connector chain ends in
//! [`PinningTls`], which does the TLS handshake with its own rustls configuration.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use buildimage_archive::{Error, Result};
use buildimage_layer::Cancel;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme, StreamOwned,
};
use ureq::Agent;
use ureq::config::ConfigBuilder;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, TlsConfig};
use ureq::typestate::AgentScope;
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout,
    RustlsConnector, Transport, TransportAdapter,
};

use super::destination;
use super::transport::CancellableTcp;

/// The folders containers/image and Docker look in for a registry's certificates when
/// none is given.
const DEFAULT_CERT_DIRS: [&str; 2] = ["/etc/containers/certs.d", "/etc/docker/certs.d"];

/// What a certificate folder holds.
#[derive(Default)]
struct CertDir {
    roots: Vec<Certificate<'static>>,
    client: Option<ClientCert>,
}

/// The agent for `registry`, configured by `config` plus TLS: certificates verified
/// (against Mozilla's roots plus the `*.crt` of the certificate folder, which are also
/// trusted as server certificates themselves) unless `verify` is false, with the
/// folder's client certificate if any. The folder is `cert_dir`, else
/// `/etc/containers/certs.d/REGISTRY` or `/etc/docker/certs.d/REGISTRY` if one exists.
/// Its connections stop as soon as `cancel` is set (see [`CancellableTcp`]).
pub(crate) fn agent(
    config: ConfigBuilder<AgentScope>,
    registry: &str,
    verify: bool,
    cert_dir: Option<&Path>,
    cancel: &Cancel,
) -> Result<Agent> {
    let folder = match cert_dir {
        Some(folder) => Some(folder.to_path_buf()),
        None => DEFAULT_CERT_DIRS
            .iter()
            .map(|base| Path::new(base).join(registry))
            .find(|folder| folder.is_dir()),
    };
    let dir = match &folder {
        Some(folder) => read_cert_dir(folder)?,
        None => CertDir::default(),
    };
    let tls = TlsConfig::builder()
        .disable_verification(!verify)
        .client_cert(dir.client.clone())
        .build();
    let config = config.tls_config(tls).build();
    // ureq's default chain without its SOCKS warning and with TCP connections that
    // `cancel` interrupts: an HTTP CONNECT proxy if configured, else TCP, then TLS for
    // `https` URLs.
    let connection =
        ().chain(ConnectProxyConnector::default())
            .chain(CancellableTcp::new(cancel.clone()));
    let Some(folder) = folder.filter(|_| verify && !dir.roots.is_empty()) else {
        // Mozilla's roots (or no verification at all): ureq's own rustls connector,
        // which reads the TLS settings from `config`.
        let connector = connection.chain(RustlsConnector::default());
        return Ok(Agent::with_parts(
            config,
            connector,
            DefaultResolver::default(),
        ));
    };
    let tls = PinningTls::new(&dir).map_err(|error| {
        destination(
            format!("Certificate folder {}: cannot set up TLS", folder.display()),
            Some(error),
        )
    })?;
    let connector = connection.chain(tls);
    Ok(Agent::with_parts(
        config,
        connector,
        DefaultResolver::default(),
    ))
}

/// A connector that wraps `https` connections in rustls with a [`PinningVerifier`].
#[derive(Debug)]
struct PinningTls {
    config: Arc<ClientConfig>,
}

impl PinningTls {
    /// Trusts Mozilla's roots and the folder's `*.crt` certificates, and pins the latter;
    /// presents the folder's client certificate if any.
    fn new(
        dir: &CertDir,
    ) -> std::result::Result<PinningTls, Box<dyn std::error::Error + Send + Sync>> {
        let provider = provider();
        let verifier = PinningVerifier::new(&dir.roots, Arc::clone(&provider))?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::ALL_VERSIONS)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match &dir.client {
            Some(client) => {
                let chain = client
                    .certs()
                    .iter()
                    .map(|certificate| CertificateDer::from(certificate.der().to_vec()))
                    .collect();
                let key = PrivateKeyDer::try_from(client.private_key().der().to_vec())?;
                builder.with_client_auth_cert(chain, key)?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(PinningTls {
            config: Arc::new(config),
        })
    }
}

impl<In: Transport> Connector<In> for PinningTls {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> std::result::Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details
            .uri
            .host()
            .ok_or(ureq::Error::Tls("no host to verify the certificate for"))?;
        // An IPv6 literal is bracketed in a URL, not in a certificate.
        let host = host
            .strip_prefix('[')
            .and_then(|host| host.strip_suffix(']'))
            .unwrap_or(host);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| ureq::Error::Tls("the host is no valid TLS server name"))?;
        let mut connection = ClientConnection::new(Arc::clone(&self.config), name)?;
        let mut socket = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        // ureq times its own handshake from the start of the connection; the adapter's
        // public API times from now, so the handshake may take a TCP connect longer.
        socket.set_timeout(details.timeout);
        connection.complete_io(&mut socket)?;
        Ok(Some(Either::B(TlsTransport {
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            stream: StreamOwned::new(connection, socket),
        })))
    }
}

/// The cryptography ureq 3.5 uses: the process's default provider, else ring (which
/// ureq's `rustls` feature compiles in).
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default().cloned().unwrap_or_else(|| {
        // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key
        // exchange; ureq still picks it, and a connection should not depend on whether
        // ureq or this module does the handshake.
        #[allow(deprecated)]
        let ring = rustls::crypto::ring::default_provider();
        Arc::new(ring)
    })
}

/// A connection wrapped in TLS by [`PinningTls`].
struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTransport")
            .field("inner", &self.stream.sock.inner())
            .finish_non_exhaustive()
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(
        &mut self,
        amount: usize,
        timeout: NextTimeout,
    ) -> std::result::Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        self.stream.write_all(&self.buffers.output()[..amount])?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> std::result::Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let read = self.stream.read(self.buffers.input_append_buf())?;
        self.buffers.input_appended(read);
        Ok(read > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// Trusts a server certificate that is one of `pinned` as itself, and verifies any
/// other with `webpki`.
#[derive(Debug)]
struct PinningVerifier {
    pinned: Vec<CertificateDer<'static>>,
    webpki: Arc<WebPkiServerVerifier>,
}

impl PinningVerifier {
    /// Pins `certificates`, and verifies other certificates against Mozilla's roots and
    /// `certificates`.
    fn new(
        certificates: &[Certificate<'static>],
        provider: Arc<CryptoProvider>,
    ) -> std::result::Result<PinningVerifier, rustls::client::VerifierBuilderError> {
        let pinned: Vec<CertificateDer<'static>> = certificates
            .iter()
            .map(|certificate| CertificateDer::from(certificate.der().to_vec()))
            .collect();
        let mut roots = RootCertStore::empty();
        // As ureq does with its roots: a certificate that is no usable trust anchor is
        // left out (it may still be pinned).
        roots.add_parsable_certificates(
            webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .cloned()
                .chain(pinned.iter().cloned()),
        );
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
        Ok(PinningVerifier { pinned, webpki })
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if self.pinned.iter().any(|pinned| pinned == end_entity) {
            verify_pinned(end_entity, server_name, now)?;
            Ok(ServerCertVerified::assertion())
        } else {
            self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            )
        }
    }

    // The handshake's signature is checked with the certificate's key, pinned or not.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// What webpki checks of an end-entity certificate besides its issuer and its CA flag,
/// as Go does for a certificate of the roots presented as the server's: it names
/// `server_name`, `now` is within its validity, and it allows server authentication if
/// it lists extended key usages. webpki's parser also refuses an unknown critical
/// extension.
fn verify_pinned(
    certificate: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> std::result::Result<(), rustls::Error> {
    let parsed = ParsedCertificate::try_from(certificate)?;
    let fields = CertFields::parse(certificate).ok_or(CertificateError::BadEncoding)?;
    let time = |secs: i64| {
        UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
    };
    let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if now_secs < fields.not_before {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before: time(fields.not_before),
        }
        .into());
    }
    if now_secs > fields.not_after {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after: time(fields.not_after),
        }
        .into());
    }
    if let Some(purposes) = fields.extended_key_usage {
        // Go takes anyExtendedKeyUsage too.
        if !purposes.contains(&OID_SERVER_AUTH) && !purposes.contains(&OID_ANY_EKU) {
            return Err(CertificateError::InvalidPurpose.into());
        }
    }
    verify_server_name(&parsed, server_name)
}

/// id-ce-extKeyUsage, 2.5.29.37, as DER content.
const OID_EXTENDED_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
/// id-kp-serverAuth, 1.3.6.1.5.5.7.3.1.
const OID_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// anyExtendedKeyUsage, 2.5.29.37.0.
const OID_ANY_EKU: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

/// The fields of an X.509 certificate that webpki checks but does not expose.
struct CertFields<'a> {
    /// `notBefore`, seconds since the Unix epoch.
    not_before: i64,
    /// `notAfter`, seconds since the Unix epoch.
    not_after: i64,
    /// The purpose OIDs of the extended key usage extension, if there is one.
    extended_key_usage: Option<Vec<&'a [u8]>>,
}

impl<'a> CertFields<'a> {
    /// Reads `der` (RFC 5280 4.1); `None` if it is not a certificate.
    fn parse(der: &'a [u8]) -> Option<CertFields<'a>> {
        let (certificate, _) = der_take(der, TAG_SEQUENCE)?;
        let (tbs, _) = der_take(certificate, TAG_SEQUENCE)?;
        let mut rest = tbs;
        if let Some((_version, after)) = der_take(rest, TAG_VERSION) {
            rest = after;
        }
        let (_serial, rest) = der_take(rest, TAG_INTEGER)?;
        let (_signature, rest) = der_take(rest, TAG_SEQUENCE)?;
        let (_issuer, rest) = der_take(rest, TAG_SEQUENCE)?;
        let (validity, rest) = der_take(rest, TAG_SEQUENCE)?;
        let (not_before, validity) = der_time(validity)?;
        let (not_after, _) = der_time(validity)?;
        let (_subject, rest) = der_take(rest, TAG_SEQUENCE)?;
        let (_key, mut rest) = der_take(rest, TAG_SEQUENCE)?;
        let mut extended_key_usage = None;
        while let Some((tag, contents, after)) = der_element(rest) {
            rest = after;
            if tag != TAG_EXTENSIONS {
                continue;
            }
            let (mut extensions, _) = der_take(contents, TAG_SEQUENCE)?;
            while !extensions.is_empty() {
                let (extension, after) = der_take(extensions, TAG_SEQUENCE)?;
                extensions = after;
                let (oid, mut value) = der_take(extension, TAG_OID)?;
                if oid != OID_EXTENDED_KEY_USAGE {
                    continue;
                }
                if let Some((_critical, after)) = der_take(value, TAG_BOOLEAN) {
                    value = after;
                }
                let (value, _) = der_take(value, TAG_OCTET_STRING)?;
                let (mut purposes, _) = der_take(value, TAG_SEQUENCE)?;
                let mut oids = Vec::new();
                while !purposes.is_empty() {
                    let (purpose, after) = der_take(purposes, TAG_OID)?;
                    oids.push(purpose);
                    purposes = after;
                }
                extended_key_usage = Some(oids);
            }
        }
        Some(CertFields {
            not_before,
            not_after,
            extended_key_usage,
        })
    }
}

const TAG_BOOLEAN: u8 = 0x01;
const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_SEQUENCE: u8 = 0x30;
/// `[0] EXPLICIT`, the certificate's version.
const TAG_VERSION: u8 = 0xa0;
/// `[3] EXPLICIT`, the certificate's extensions.
const TAG_EXTENSIONS: u8 = 0xa3;

/// The first DER element of `input`: its tag, its contents and what follows it. Tags of
/// one byte only, as every tag of a certificate is.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // The long form: the low bits count the length's bytes, big-endian.
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes
            .iter()
            .fold(0_usize, |length, &byte| (length << 8) | usize::from(byte));
        (length, rest)
    };
    if rest.len() < length {
        return None;
    }
    let (contents, rest) = rest.split_at(length);
    Some((tag, contents, rest))
}

/// The contents of the first DER element of `input` and what follows, if its tag is
/// `tag`.
fn der_take(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, contents, rest) = der_element(input)?;
    (found == tag).then_some((contents, rest))
}

/// The first element of `input` as an X.509 time (RFC 5280 4.1.2.5: `YYMMDDHHMMSSZ`
/// `UTCTime`, years 1950 to 2049, or `YYYYMMDDHHMMSSZ` `GeneralizedTime`), in seconds since
/// the Unix epoch, and what follows.
fn der_time(input: &[u8]) -> Option<(i64, &[u8])> {
    let (tag, contents, rest) = der_element(input)?;
    let year_digits = match tag {
        TAG_UTC_TIME => 2,
        TAG_GENERALIZED_TIME => 4,
        _ => return None,
    };
    let (zone, digits) = contents.split_last()?;
    if *zone != b'Z' || digits.len() != year_digits + 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = |from: usize, to: usize| {
        digits[from..to]
            .iter()
            .fold(0_i64, |value, digit| value * 10 + i64::from(digit - b'0'))
    };
    let mut year = number(0, year_digits);
    if tag == TAG_UTC_TIME {
        year += if year >= 50 { 1900 } else { 2000 };
    }
    let field = |index: usize| number(year_digits + 2 * index, year_digits + 2 * index + 2);
    let (month, day, hour, minute, second) = (field(0), field(1), field(2), field(3), field(4));
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some((seconds, rest))
}

/// The days from 1970-01-01 to `year`-`month`-`day` of the proleptic Gregorian
/// calendar (Howard Hinnant's `days_from_civil`: years start in March, so the leap day
/// is the last of its year).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Reads the certificate folder `folder` (byte-wise name order).
fn read_cert_dir(folder: &Path) -> Result<CertDir> {
    let mut names: Vec<PathBuf> = fs_err::read_dir(folder)
        .and_then(|entries| {
            entries
                .map(|entry| entry.map(|entry| entry.path()))
                .collect::<std::io::Result<_>>()
        })
        .map_err(|error| Error::io("read the certificate folder", folder, error))?;
    names.sort();
    let mut dir = CertDir::default();
    for path in &names {
        match path.extension().and_then(|e| e.to_str()) {
            Some("crt") => dir.roots.extend(read_certificates(path)?),
            Some("cert") => {
                let key = path.with_extension("key");
                if !key.is_file() {
                    return Err(invalid(path, &format!("has no key {}", key.display())));
                }
                if dir.client.is_none() {
                    let chain = read_certificates(path)?;
                    dir.client = Some(ClientCert::new_with_certs(&chain, read_key(&key)?));
                }
            }
            Some("key") => {
                let cert = path.with_extension("cert");
                if !cert.is_file() {
                    return Err(invalid(
                        path,
                        &format!("has no certificate {}", cert.display()),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(dir)
}

fn invalid(path: &Path, reason: &str) -> Error {
    destination(
        format!("Certificate file {}: {reason}", path.display()),
        None,
    )
}

/// The PEM certificates of `path`; an error if it holds none.
fn read_certificates(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let pem = fs_err::read(path).map_err(|error| Error::io("read", path, error))?;
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(certificate)) => certificates.push(certificate),
            Ok(_) => {}
            Err(error) => {
                return Err(destination(
                    format!("Certificate file {}: not valid PEM", path.display()),
                    Some(Box::new(error)),
                ));
            }
        }
    }
    if certificates.is_empty() {
        return Err(invalid(path, "holds no PEM certificate"));
    }
    Ok(certificates)
}

/// The PEM private key of `path`.
fn read_key(path: &Path) -> Result<PrivateKey<'static>> {
    let pem = fs_err::read(path).map_err(|error| Error::io("read", path, error))?;
    PrivateKey::from_pem(&pem).map_err(|error| {
        destination(
            format!("Key file {}: no PEM private key", path.display()),
            Some(Box::new(error)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed `CA:TRUE` certificate for the IP address 127.0.0.1, valid from
    /// 2026-12-07T21:59:03Z (`UTCTime`) to 2126-11-13T21:59:03Z (`GeneralizedTime`), made by
    /// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
    /// -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -days 36500`.
    const SERVER: &str = "-----BEGIN CERTIFICATE-----
MIIBjzCCATagAwIBAgIUF7HBfV/7JrAcW0vMWO8v68MPeCEwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTIwNzIxNTkwM1oYDzIxMjYxMTEz
MjE1OTAzWjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAATK0enc9llZh+81Ydl2QFLV8CTXmQmKv7Fh0+5se7haqBjyb45bzcsh
1dI9Wbt5lowBP/Th0TmpM8qxiVhEgUuEo2QwYjAdBgNVHQ4EFgQU9BAse32/Tk1j
IY78MpX+oDYNuhUwHwYDVR0jBBgwFoAU9BAse32/Tk1jIY78MpX+oDYNuhUwDwYD
VR0TAQH/BAUwAwEB/zAPBgNVHREECDAGhwR/AAABMAoGCCqGSM49BAMCA0cAMEQC
IE1txvDykg2hL9WLrsFo3WE6zSmCnu8btaj6e54ZMGw+AiA6kT9mVq2Mund3CQ2c
/kS5oUT+KV1lV8gQezBcR2dlZA==
-----END CERTIFICATE-----
";

    /// Another such certificate, with `-addext extendedKeyUsage=clientAuth` too.
    const CLIENT_ONLY: &str = "-----BEGIN CERTIFICATE-----
MIIBpDCCAUugAwIBAgIUKrd3JedI5IXAL1oOBuUeR0i/IoIwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTIwNzIxNTkwM1oYDzIxMjYxMTEz
MjE1OTAzWjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAATjfGvCxbcMa2g0gnw7QSdVvIZSyaPwoB+zGIjSicWobKwDJj5sb78A
jwiaQGhU5VBc91MkkZN0MkfAvKtNKxJPo3kwdzAdBgNVHQ4EFgQUScR3FJvybQqk
wFHkFP3ioWjuZh8wHwYDVR0jBBgwFoAUScR3FJvybQqkwFHkFP3ioWjuZh8wDwYD
VR0TAQH/BAUwAwEB/zAPBgNVHREECDAGhwR/AAABMBMGA1UdJQQMMAoGCCsGAQUF
BwMCMAoGCCqGSM49BAMCA0cAMEQCIGbe0QMJvqGg6sbu/nX9a3mN68m0DryXh4I5
cFX5Y/4jAiBJ+XSuiwHdn86IzHfNLqUPoIH4KTk2yNDyv/sAJ5ZaAw==
-----END CERTIFICATE-----
";

    /// A CA made like [`SERVER`] with `-subj "/CN=test CA"` and no subjectAltName.
    const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBfDCCASGgAwIBAgIUIK7AWkHGFJjuRQ75HfMaPnejqLAwCgYIKoZIzj0EAwIw
EjEQMA4GA1UEAwwHdGVzdCBDQTAgFw0yNjEyMDcyMjAxMjRaGA8yMTI2MTExMzIy
MDEyNFowEjEQMA4GA1UEAwwHdGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABHMg2VCxdtV6Zc9ym/KQSC8ELPTk2mOKO3C3HASIReY89i2i6Dij+Wx3k05s
3Z6hfmpJHTIHAHSEvDoHFaDUd+OjUzBRMB0GA1UdDgQWBBStg6cQGfjNjnoel8Mp
CyHCH76KGzAfBgNVHSMEGDAWgBStg6cQGfjNjnoel8MpCyHCH76KGzAPBgNVHRMB
Af8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQDrf0Qi/+781x0Kf1jWEK5gWPmw
WbpHVVl66yM8BHN/NQIhAJ+MWXzVO26TULGOxYFv4+IhzwQnT/j5KHBkN6DZYIT6
-----END CERTIFICATE-----
";

    /// A `CA:FALSE` certificate for 127.0.0.1 issued by [`CA`] from 2026-12-07T22:01:24Z,
    /// made by `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
    /// -subj /CN=127.0.0.1` and `openssl x509 -req -CA ca.crt -CAkey ca.key -days 36500
    /// -extfile leaf.ext` with `basicConstraints=CA:FALSE` and
    /// `subjectAltName=IP:127.0.0.1` in `leaf.ext`.
    const LEAF: &str = "-----BEGIN CERTIFICATE-----
MIIBiTCCAS6gAwIBAgIUL1IremVKufhET7reJKGneSd+dZAwCgYIKoZIzj0EAwIw
EjEQMA4GA1UEAwwHdGVzdCBDQTAgFw0yNjEyMDcyMjAxMjRaGA8yMTI2MTExMzIy
MDEyNFowFDESMBAGA1UEAwwJMTI3LjAuMC4xMFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEC6p4z0SvMakDlWCtFJd3M+7lpyL6SBAFOvCmo0HY1MjFLjYKOChneQ+B
4T85D8OxTO9afrq9w9uPxn/jA4CDY6NeMFwwCQYDVR0TBAIwADAPBgNVHREECDAG
hwR/AAABMB0GA1UdDgQWBBRvgmzZ+ZKdGZPJnEy9Ppd0RMQ1lDAfBgNVHSMEGDAW
gBStg6cQGfjNjnoel8MpCyHCH76KGzAKBggqhkjOPQQDAgNJADBGAiEAhAVT0nvv
g5v3Q/tY6X4oginDflRTj5em/vxPa5G3QtgCIQD6UBHe/YmaFW275+Ob7mqg8E5T
ggDg/rk2Je86mbx7Lw==
-----END CERTIFICATE-----
";

    /// `date -d "2026-12-07 21:59:03 UTC" +%s` and `date -d "2126-11-13 21:59:03 UTC" +%s`.
    const NOT_BEFORE: u64 = 1_796_680_743;
    const NOT_AFTER: u64 = 4_950_280_743;
    const NOT_BEFORE_I64: i64 = 1_796_680_743;
    const NOT_AFTER_I64: i64 = 4_950_280_743;

    fn der(pem: &str) -> CertificateDer<'static> {
        match ureq::tls::parse_pem(pem.as_bytes()).next() {
            Some(Ok(PemItem::Certificate(certificate))) => {
                CertificateDer::from(certificate.der().to_vec())
            }
            _ => panic!("not a PEM certificate"),
        }
    }

    /// A verifier pinning the certificates of `pems`, as for a folder of them.
    fn verifier(pems: &[&str]) -> PinningVerifier {
        let certificates: Vec<Certificate<'static>> = pems
            .iter()
            .map(|pem| Certificate::from_der(der(pem).as_ref()).to_owned())
            .collect();
        PinningVerifier::new(&certificates, provider()).unwrap()
    }

    fn verify(
        verifier: &PinningVerifier,
        pem: &str,
        name: &str,
        secs: u64,
    ) -> std::result::Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let now = UnixTime::since_unix_epoch(Duration::from_secs(secs));
        verifier
            .verify_server_cert(&der(pem), &[], &name, &[], now)
            .map(|_| ())
    }

    #[test]
    fn pinned_ca_certificate_is_trusted_as_the_servers_own() {
        let verifier = verifier(&[CLIENT_ONLY, SERVER]);
        verify(&verifier, SERVER, "127.0.0.1", NOT_BEFORE).unwrap();
        verify(&verifier, SERVER, "127.0.0.1", NOT_AFTER).unwrap();
    }

    #[test]
    fn pinned_certificate_must_name_the_host() {
        let verifier = verifier(&[SERVER]);
        let error = verify(&verifier, SERVER, "localhost", NOT_BEFORE).unwrap_err();
        assert!(
            matches!(
                error,
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })
            ),
            "{error:?}"
        );
        let error = verify(&verifier, SERVER, "127.0.0.2", NOT_BEFORE).unwrap_err();
        assert!(error.to_string().contains("not valid for name"), "{error}");
    }

    #[test]
    fn pinned_certificate_must_be_within_its_validity() {
        let verifier = verifier(&[SERVER]);
        let early = verify(&verifier, SERVER, "127.0.0.1", NOT_BEFORE - 1).unwrap_err();
        assert!(
            matches!(
                early,
                rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext { .. })
            ),
            "{early:?}"
        );
        let late = verify(&verifier, SERVER, "127.0.0.1", NOT_AFTER + 1).unwrap_err();
        assert!(
            matches!(
                late,
                rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
            ),
            "{late:?}"
        );
    }

    #[test]
    fn pinned_certificate_must_allow_server_authentication() {
        let verifier = verifier(&[CLIENT_ONLY]);
        let error = verify(&verifier, CLIENT_ONLY, "127.0.0.1", NOT_BEFORE).unwrap_err();
        assert_eq!(
            error,
            rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose)
        );
    }

    #[test]
    fn certificate_not_pinned_goes_through_webpki() {
        let verifier = verifier(&[CLIENT_ONLY, CA]);
        let leaf_valid = NOT_BEFORE + 3_600;
        verify(&verifier, LEAF, "127.0.0.1", leaf_valid).unwrap();
        let error = verify(&verifier, LEAF, "localhost", leaf_valid).unwrap_err();
        assert!(error.to_string().contains("not valid for name"), "{error}");
        // A CA certificate not in the folder is refused as webpki refuses it.
        let error = verify(&verifier, SERVER, "127.0.0.1", NOT_BEFORE).unwrap_err();
        assert!(error.to_string().contains("CaUsedAsEndEntity"), "{error}");
        // Without its CA, the leaf is not trusted.
        let without_ca = self::verifier(&[SERVER]);
        let error = verify(&without_ca, LEAF, "127.0.0.1", leaf_valid).unwrap_err();
        assert_eq!(
            error,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
    }

    #[test]
    fn certificate_fields_are_read() {
        let fields = CertFields::parse(&[]);
        assert!(fields.is_none());
        let server = der(SERVER);
        let fields = CertFields::parse(&server).unwrap();
        assert_eq!(fields.not_before, NOT_BEFORE_I64);
        assert_eq!(fields.not_after, NOT_AFTER_I64);
        assert!(fields.extended_key_usage.is_none());
        let client = der(CLIENT_ONLY);
        let fields = CertFields::parse(&client).unwrap();
        assert_eq!(
            fields.extended_key_usage,
            Some(vec![&[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02][..]])
        );
        // Truncated anywhere, it is not read.
        for end in 0..client.len() {
            assert!(CertFields::parse(&client[..end]).is_none(), "{end}");
        }
    }

    #[test]
    fn times_before_and_after_the_epoch() {
        let time = |tag: u8, text: &str| {
            let mut der = vec![tag, text.len() as u8];
            der.extend_from_slice(text.as_bytes());
            der_time(&der).map(|(secs, _)| secs)
        };
        assert_eq!(time(TAG_UTC_TIME, "700101000000Z"), Some(0));
        assert_eq!(time(TAG_UTC_TIME, "691231235959Z"), Some(-1));
        assert_eq!(time(TAG_UTC_TIME, "500101000000Z"), Some(-631_152_000));
        assert_eq!(time(TAG_UTC_TIME, "491231235959Z"), Some(2_524_607_999));
        assert_eq!(
            time(TAG_GENERALIZED_TIME, "20000229120000Z"),
            Some(951_825_600)
        );
        assert_eq!(
            time(TAG_GENERALIZED_TIME, "99991231235959Z"),
            Some(253_402_300_799)
        );
        assert_eq!(time(TAG_UTC_TIME, "700101000000"), None);
        assert_eq!(time(TAG_UTC_TIME, "701301000000Z"), None);
        assert_eq!(time(TAG_UTC_TIME, "7001010000+0Z"), None);
        assert_eq!(time(TAG_GENERALIZED_TIME, "700101000000Z"), None);
    }

    fn agent_error(dir: &Path) -> String {
        agent(
            Agent::config_builder(),
            "r.io",
            true,
            Some(dir),
            &Cancel::new(),
        )
        .err()
        .unwrap()
        .to_string()
    }

    #[test]
    fn key_without_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("client.key"), "x").unwrap();
        let error = agent_error(dir.path());
        assert!(error.contains("client.key: has no certificate"), "{error}");
    }

    #[test]
    fn crt_without_pem_is_named() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("ca.crt"), "not pem").unwrap();
        let error = agent_error(dir.path());
        assert!(
            error.contains("ca.crt: holds no PEM certificate"),
            "{error}"
        );
    }

    #[test]
    fn missing_folder_is_named() {
        let error = agent_error(Path::new("/nonexistent/certs"));
        assert!(error.contains("/nonexistent/certs"), "{error}");
    }
}
