//! The server name in a TLS ClientHello, read from a passthrough tunnel's
//! first bytes without decrypting anything.
//!
//! A passthrough route names one host, but the tunnel carries whatever the
//! client sends: a ClientHello for another name, sent through a CONNECT to
//! an allowed host on a shared front end (a CDN, a cloud load balancer),
//! reaches that other tenant. So the name the client asks the server for
//! must be the CONNECT's host. Only the first handshake message is read;
//! everything after it is relayed untouched.

/// The most bytes of handshake a ClientHello may take (one with large
/// post-quantum key shares is about 2 KiB; TLS allows a message to span
/// records, so a few records' worth).
pub const MAX_HELLO: usize = 64 * 1024;

/// TLS's bound on one record's payload (2^14 plus room for compression,
/// which no ClientHello record uses).
const MAX_RECORD: usize = 16_384 + 2048;

const HANDSHAKE: u8 = 0x16;
/// change_cipher_spec, alert, handshake, application_data, heartbeat.
const TLS_RECORD_TYPES: std::ops::RangeInclusive<u8> = 0x14..=0x18;
/// encrypted_client_hello (RFC 9849), and the drafts' code points.
const ECH: std::ops::RangeInclusive<u16> = 0xfe02..=0xfe0d;
/// encrypted_server_name, ECH's predecessor (draft-ietf-tls-esni up to
/// -02): the same hidden name, under its old code point.
const ESNI: u16 = 0xffce;
const CLIENT_HELLO: u8 = 1;
const SERVER_NAME: u16 = 0;
const HOST_NAME: u8 = 0;

/// What the first bytes of a tunnel say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// Not enough bytes yet to tell.
    NeedMore,
    /// Not a TLS handshake (some other protocol): nothing to check.
    NotTls,
    /// A complete ClientHello, with its server name (lower-case, without a
    /// trailing dot) if it has one.
    Name(Option<String>),
    /// A TLS handshake that is not a ClientHello a server would accept, or
    /// one too large or ambiguous (two names) to judge.
    Malformed,
}

/// Reads the ClientHello at the start of `buf`, the bytes a client has sent
/// so far.
pub fn read(buf: &[u8]) -> Hello {
    let Some(&first) = buf.first() else {
        return Hello::NeedMore;
    };
    if first != HANDSHAKE {
        // Another TLS record first (an alert, a ChangeCipherSpec): Go's and
        // OpenSSL's servers skip warning alerts before the handshake and
        // route by the ClientHello after it, which this check would never
        // read. Refused, not relayed as some other protocol.
        if TLS_RECORD_TYPES.contains(&first) {
            return Hello::Malformed;
        }
        return Hello::NotTls;
    }
    let mut message = Vec::new();
    let mut pos = 0;
    loop {
        let Some(head) = buf.get(pos..pos + 5) else {
            return Hello::NeedMore;
        };
        if head[0] != HANDSHAKE {
            return Hello::Malformed;
        }
        let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
        if len == 0 || len > MAX_RECORD {
            return Hello::Malformed;
        }
        let Some(payload) = buf.get(pos + 5..pos + 5 + len) else {
            return Hello::NeedMore;
        };
        message.extend_from_slice(payload);
        pos += 5 + len;
        if message.len() < 4 {
            continue;
        }
        if message[0] != CLIENT_HELLO {
            return Hello::Malformed;
        }
        let body_len =
            usize::from(message[1]) << 16 | usize::from(message[2]) << 8 | usize::from(message[3]);
        if 4 + body_len > MAX_HELLO {
            return Hello::Malformed;
        }
        if let Some(body) = message.get(4..4 + body_len) {
            return server_name(body).unwrap_or(Hello::Malformed);
        }
    }
}

/// The server name of a ClientHello body; `None` if the body does not
/// parse.
fn server_name(body: &[u8]) -> Option<Hello> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy version, random
    let session = r.u8()?;
    r.take(usize::from(session))?;
    let suites = r.u16()?;
    r.take(usize::from(suites))?;
    let compression = r.u8()?;
    r.take(usize::from(compression))?;
    if r.0.is_empty() {
        // No extensions at all (an old client): no name.
        return Some(Hello::Name(None));
    }
    let len = r.u16()?;
    let mut exts = Reader(r.take(usize::from(len))?);
    if !r.0.is_empty() {
        return None;
    }
    let mut name = None;
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let len = exts.u16()?;
        let data = exts.take(usize::from(len))?;
        if ECH.contains(&kind) || kind == ESNI {
            // The name the server routes by is then the encrypted inner
            // one, which cannot be read here: the outer name proves
            // nothing. (Clients that send it as GREASE, Chromium's, need
            // an intercepted route.)
            return None;
        }
        if kind != SERVER_NAME {
            continue;
        }
        if name.is_some() {
            return None;
        }
        let mut d = Reader(data);
        let list_len = d.u16()?;
        let mut list = Reader(d.take(usize::from(list_len))?);
        // Nothing may follow the list: a parser that reads past it
        // differently would see another name.
        if !d.0.is_empty() {
            return None;
        }
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let len = list.u16()?;
            let host = list.take(usize::from(len))?;
            if name_type != HOST_NAME {
                continue;
            }
            if name.is_some() || host.is_empty() || !host.is_ascii() {
                return None;
            }
            let host = std::str::from_utf8(host).ok()?;
            // One trailing dot, as in a CONNECT authority; `x..` stays
            // unlike `x`.
            name = Some(host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase());
        }
    }
    Some(Hello::Name(name))
}

/// A bounds-checked cursor: every read that would run past the end is
/// `None`.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// A ClientHello as rustls writes it for `name`, in one record.
    fn rustls_hello(name: &str) -> Vec<u8> {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), server).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    /// `hello`'s handshake message split over records of `size` bytes.
    fn split_records(hello: &[u8], size: usize) -> Vec<u8> {
        let message = &hello[5..];
        let mut out = Vec::new();
        for part in message.chunks(size) {
            out.extend_from_slice(&[HANDSHAKE, 3, 1]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    #[test]
    fn the_name_is_read_whole_or_in_records_and_more_is_asked_for_until_then() {
        let hello = rustls_hello("Pass.Test");
        assert_eq!(read(&hello), Hello::Name(Some("pass.test".into())));
        for cut in 0..hello.len() {
            assert_eq!(read(&hello[..cut]), Hello::NeedMore, "cut at {cut}");
        }
        let split = split_records(&hello, 100);
        assert_eq!(read(&split), Hello::Name(Some("pass.test".into())));
        // What follows the hello is not its business.
        let mut more = hello.clone();
        more.extend_from_slice(b"\x17\x03\x03 anything");
        assert_eq!(read(&more), Hello::Name(Some("pass.test".into())));
    }

    #[test]
    fn other_protocols_are_not_tls_and_broken_handshakes_are_malformed() {
        assert_eq!(read(b"SSH-2.0-OpenSSH_9.2\r\n"), Hello::NotTls);
        assert_eq!(read(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        let hello = rustls_hello("pass.test");
        // A record of another type after the first.
        let mut split = split_records(&hello, 100);
        split[105] = 0x17;
        assert_eq!(read(&split), Hello::Malformed);
        // A server's hello, not a client's.
        let mut server = hello.clone();
        server[5] = 2;
        assert_eq!(read(&server), Hello::Malformed);
        // Lengths that run past their container.
        let mut bad = hello.clone();
        bad[5 + 4 + 34] = 0xff; // session id length
        assert_eq!(read(&bad), Hello::Malformed);
        // An empty record, an oversized one.
        assert_eq!(read(&[HANDSHAKE, 3, 1, 0, 0]), Hello::Malformed);
        assert_eq!(read(&[HANDSHAKE, 3, 1, 0xff, 0xff]), Hello::Malformed);
    }

    /// A hand-made ClientHello with the given server_name extension data.
    fn hello_with(sni: &[&[u8]]) -> Vec<u8> {
        let exts: Vec<(u16, &[u8])> = sni.iter().map(|d| (SERVER_NAME, *d)).collect();
        hello_with_extensions(&exts)
    }

    /// A hand-made ClientHello with the given extensions (type, data).
    fn hello_with_extensions(extensions: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
        body.extend_from_slice(&[1, 0]); // null compression
        let mut exts = Vec::new();
        for (kind, data) in extensions {
            exts.extend_from_slice(&kind.to_be_bytes());
            exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
            exts.extend_from_slice(data);
        }
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut msg = vec![CLIENT_HELLO, 0];
        msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
        msg.extend_from_slice(&body);
        let mut out = vec![HANDSHAKE, 3, 1];
        out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        out.extend_from_slice(&msg);
        out
    }

    fn name_list(names: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for n in names {
            list.push(HOST_NAME);
            list.extend_from_slice(&(n.len() as u16).to_be_bytes());
            list.extend_from_slice(n);
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        data
    }

    #[test]
    fn two_names_or_a_bad_name_are_malformed_and_no_name_is_none() {
        assert_eq!(read(&hello_with(&[])), Hello::Name(None));
        assert_eq!(
            read(&hello_with(&[&name_list(&[b"a.test."])])),
            Hello::Name(Some("a.test".into()))
        );
        for ext in [
            name_list(&[b"a.test", b"b.test"]),
            name_list(&[b""]),
            name_list(&["é.test".as_bytes()]),
        ] {
            assert_eq!(read(&hello_with(&[&ext])), Hello::Malformed);
        }
        let one = name_list(&[b"a.test"]);
        let two = name_list(&[b"b.test"]);
        assert_eq!(read(&hello_with(&[&one, &two])), Hello::Malformed);
    }

    /// Attack: a warning alert record before the ClientHello. Go's and
    /// OpenSSL's servers skip it and route by the hello that follows, for
    /// another tenant of a shared front end; relaying it as "not TLS"
    /// would skip the name check.
    #[test]
    fn a_record_before_the_hello_is_malformed() {
        let evil = rustls_hello("evil.test");
        for first in [0x14u8, 0x15, 0x17, 0x18] {
            let mut bytes = vec![first, 3, 1, 0, 2, 1, 0x5a];
            bytes.extend_from_slice(&evil);
            assert_eq!(read(&bytes), Hello::Malformed, "record type {first:#x}");
            assert_eq!(read(&bytes[..1]), Hello::Malformed);
        }
    }

    /// Attack: an encrypted ClientHello whose outer name is the allowed
    /// host and whose inner one (the one a front end routes by) is not.
    #[test]
    fn an_encrypted_client_hello_is_malformed() {
        let name = name_list(&[b"pass.test"]);
        let plain = hello_with_extensions(&[(SERVER_NAME, &name)]);
        assert_eq!(read(&plain), Hello::Name(Some("pass.test".into())));
        for ech in [0xfe0du16, 0xfe0a, 0xfe02, 0xffce] {
            let hello = hello_with_extensions(&[(SERVER_NAME, &name), (ech, b"\x00\x01inner")]);
            assert_eq!(read(&hello), Hello::Malformed, "{ech:#x}");
        }
        // Neighbouring code points are other extensions.
        let other = hello_with_extensions(&[(SERVER_NAME, &name), (0xfe0e, b"x")]);
        assert_eq!(read(&other), Hello::Name(Some("pass.test".into())));
    }

    /// Attack: bytes after the name list inside the server_name extension
    /// (a second list a laxer parser might read), and a name with two
    /// trailing dots (read as the name itself, it would pass the check
    /// against a CONNECT to `pass.test`).
    #[test]
    fn the_server_name_extension_holds_one_list_and_one_dot_at_most() {
        let mut trailing = name_list(&[b"pass.test"]);
        trailing.extend_from_slice(&name_list(&[b"evil.test"]));
        let hello = hello_with_extensions(&[(SERVER_NAME, &trailing)]);
        assert_eq!(read(&hello), Hello::Malformed);
        let dots = hello_with_extensions(&[(SERVER_NAME, &name_list(&[b"pass.test.."]))]);
        assert_eq!(read(&dots), Hello::Name(Some("pass.test.".into())));
        let dot = hello_with_extensions(&[(SERVER_NAME, &name_list(&[b"pass.test."]))]);
        assert_eq!(read(&dot), Hello::Name(Some("pass.test".into())));
    }

    proptest! {
        /// Hostile bytes never panic, and a verdict never changes as more
        /// bytes arrive once given.
        #[test]
        fn any_bytes_are_judged_without_panicking(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            prefix in any::<bool>(),
        ) {
            let mut buf = bytes.clone();
            if prefix && !buf.is_empty() {
                buf[0] = HANDSHAKE;
            }
            let whole = read(&buf);
            for cut in 0..buf.len() {
                let part = read(&buf[..cut]);
                prop_assert!(part == Hello::NeedMore || part == whole, "{part:?} then {whole:?}");
            }
        }
    }
}
