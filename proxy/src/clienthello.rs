//! A small, strict TLS ClientHello reader: just enough to learn the SNI name
//! without terminating TLS.
//!
//! It reads the first handshake message from TLS records (RFC 8446 §5.1, §4.1.2;
//! RFC 6066 §3), reassembling it across records, and checks every length against
//! its container. Anything that does not add up is [`HelloError::Malformed`]: the
//! transparent proxy closes such a connection and records it, because a client
//! that sends garbage to port 443 is either broken or probing the filter.
//!
//! The caller feeds the bytes it has; [`parse`] answers how many more it needs
//! (so reads are length-bounded: never more than [`MAX_HELLO`] bytes are buffered).

/// The most bytes buffered for one ClientHello, record headers included. Real
/// hellos are 0.5–2 KiB (post-quantum key shares make them ~1.8 KiB); 16 KiB is
/// the largest single record.
pub const MAX_HELLO: usize = 16 * 1024 + 5 * 4;

const RECORD_HEADER: usize = 5;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;
/// RFC 8446: a record's plaintext is at most 2^14 bytes.
const MAX_RECORD: usize = 1 << 14;

/// Why the bytes are not (yet) a ClientHello.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HelloError {
    /// At least this many bytes in total are needed before it can be decided.
    #[error("need {0} bytes")]
    Incomplete(usize),
    /// Not TLS, or a ClientHello whose lengths do not add up.
    #[error("malformed TLS ClientHello: {0}")]
    Malformed(&'static str),
    /// Larger than [`MAX_HELLO`].
    #[error("TLS ClientHello larger than {MAX_HELLO} bytes")]
    TooLarge,
}

/// What the proxy needs from a ClientHello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// The server name, lowercased; `None` when the client sent no SNI (an IP
    /// address, or an old client).
    pub sni: Option<String>,
    /// How many bytes of the input the records holding the hello took.
    pub len: usize,
}

/// Whether the first byte looks like a TLS handshake record (cheap check before
/// buffering).
pub fn looks_like_tls(first: u8) -> bool {
    first == CONTENT_HANDSHAKE
}

/// Parses the ClientHello at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<ClientHello, HelloError> {
    // Reassemble the handshake message from consecutive handshake records.
    let mut message: Vec<u8> = Vec::new();
    let mut at = 0usize;
    let mut needed: Option<usize> = None; // the handshake message's full length
    loop {
        if at + RECORD_HEADER > buf.len() {
            return Err(incomplete(at + RECORD_HEADER));
        }
        let h = &buf[at..at + RECORD_HEADER];
        if h[0] != CONTENT_HANDSHAKE {
            return Err(HelloError::Malformed("not a TLS handshake record"));
        }
        // Record versions 3.0 to 3.4; anything else is not TLS.
        if h[1] != 3 || h[2] > 4 {
            return Err(HelloError::Malformed("unknown record version"));
        }
        let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
        if len == 0 || len > MAX_RECORD {
            return Err(HelloError::Malformed("bad record length"));
        }
        let end = at + RECORD_HEADER + len;
        if end > MAX_HELLO {
            return Err(HelloError::TooLarge);
        }
        if end > buf.len() {
            return Err(incomplete(end));
        }
        message.extend_from_slice(&buf[at + RECORD_HEADER..end]);
        at = end;
        if needed.is_none() && message.len() >= 4 {
            if message[0] != HANDSHAKE_CLIENT_HELLO {
                return Err(HelloError::Malformed(
                    "first handshake is not a ClientHello",
                ));
            }
            let body = (usize::from(message[1]) << 16)
                | (usize::from(message[2]) << 8)
                | usize::from(message[3]);
            if body + 4 > MAX_HELLO {
                return Err(HelloError::TooLarge);
            }
            needed = Some(body + 4);
        }
        if let Some(n) = needed
            && message.len() >= n
        {
            // Data past the hello in the same record would be a second handshake
            // message before the server spoke: not a client.
            if message.len() > n {
                return Err(HelloError::Malformed("data after the ClientHello"));
            }
            let sni = parse_body(&message[4..n])?;
            return Ok(ClientHello { sni, len: at });
        }
    }
}

fn incomplete(n: usize) -> HelloError {
    if n > MAX_HELLO {
        HelloError::TooLarge
    } else {
        HelloError::Incomplete(n)
    }
}

/// A cursor that never reads past its slice.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HelloError> {
        if n > self.buf.len() {
            return Err(HelloError::Malformed(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, HelloError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, HelloError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let n = usize::from(self.u8(what)?);
        self.take(n, what)
    }

    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let n = usize::from(self.u16(what)?);
        self.take(n, what)
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

fn parse_body(body: &[u8]) -> Result<Option<String>, HelloError> {
    let mut r = Reader { buf: body };
    let version = r.u16("legacy_version")?;
    if !(0x0300..=0x0304).contains(&version) {
        return Err(HelloError::Malformed("unknown client version"));
    }
    r.take(32, "random")?;
    let session = r.vec8("session id")?;
    if session.len() > 32 {
        return Err(HelloError::Malformed("session id longer than 32 bytes"));
    }
    let suites = r.vec16("cipher suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(HelloError::Malformed("bad cipher suite list"));
    }
    let compression = r.vec8("compression methods")?;
    if compression.is_empty() {
        return Err(HelloError::Malformed("no compression methods"));
    }
    if r.is_empty() {
        // SSL 3.0 style hello without extensions: no SNI.
        return Ok(None);
    }
    let mut exts = Reader {
        buf: r.vec16("extensions")?,
    };
    if !r.is_empty() {
        return Err(HelloError::Malformed("data after the extensions"));
    }
    let mut seen: Vec<u16> = Vec::new();
    let mut sni = None;
    while !exts.is_empty() {
        let kind = exts.u16("extension type")?;
        let data = exts.vec16("extension data")?;
        // RFC 8446 §4.2: an extension type appears at most once. Two SNI
        // extensions would let a client show one name to us and another to the
        // server.
        if seen.contains(&kind) {
            return Err(HelloError::Malformed("duplicate extension"));
        }
        if seen.len() < 128 {
            seen.push(kind);
        } else {
            return Err(HelloError::Malformed("too many extensions"));
        }
        if kind == EXT_SERVER_NAME {
            sni = parse_server_name(data)?;
        }
    }
    Ok(sni)
}

fn parse_server_name(data: &[u8]) -> Result<Option<String>, HelloError> {
    let mut r = Reader { buf: data };
    let mut list = Reader {
        buf: r.vec16("server name list")?,
    };
    if !r.is_empty() || list.is_empty() {
        return Err(HelloError::Malformed("bad server name extension"));
    }
    let mut name = None;
    while !list.is_empty() {
        let kind = list.u8("server name type")?;
        let value = list.vec16("server name")?;
        if kind != NAME_TYPE_HOST {
            continue;
        }
        // RFC 6066: at most one name of each type.
        if name.is_some() {
            return Err(HelloError::Malformed("two host names in SNI"));
        }
        name = Some(host_name(value)?);
    }
    Ok(name)
}

/// A DNS host name as RFC 6066 allows it: ASCII letters, digits, `-`, `_` and
/// dots, no trailing dot, 1–253 bytes. Returned lowercased.
fn host_name(value: &[u8]) -> Result<String, HelloError> {
    if value.is_empty() || value.len() > 253 {
        return Err(HelloError::Malformed("bad SNI name length"));
    }
    if value.last() == Some(&b'.') || value.first() == Some(&b'.') {
        return Err(HelloError::Malformed(
            "SNI name with a leading or trailing dot",
        ));
    }
    let ok = value
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !ok || value.windows(2).any(|w| w == b"..") {
        return Err(HelloError::Malformed("SNI name is not a host name"));
    }
    let mut s = String::with_capacity(value.len());
    s.extend(value.iter().map(|b| char::from(b.to_ascii_lowercase())));
    Ok(s)
}

/// Builds a minimal, valid ClientHello record with `sni` (tests and fuzzing).
#[doc(hidden)]
pub fn build_hello(sni: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&[3, 3]);
    body.extend_from_slice(&[7u8; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
    body.extend_from_slice(&[1, 0]); // null compression
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let n = name.len() as u16;
        let mut ext = Vec::new();
        ext.extend_from_slice(&(n + 3).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&n.to_be_bytes());
        ext.extend_from_slice(name.as_bytes());
        exts.extend_from_slice(&0u16.to_be_bytes());
        exts.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        exts.extend_from_slice(&ext);
    }
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut msg = vec![HANDSHAKE_CLIENT_HELLO];
    let n = body.len() as u32;
    msg.extend_from_slice(&n.to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    let mut rec = vec![CONTENT_HANDSHAKE, 3, 1];
    rec.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    rec.extend_from_slice(&msg);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_the_sni() {
        let rec = build_hello(Some("Www.Example.COM"));
        let hello = parse(&rec).expect("valid hello");
        assert_eq!(hello.sni.as_deref(), Some("www.example.com"));
        assert_eq!(hello.len, rec.len());
        assert_eq!(parse(&build_hello(None)).expect("valid").sni, None);
    }

    #[test]
    fn asks_for_more_until_complete() {
        let rec = build_hello(Some("a.example"));
        for cut in 0..rec.len() {
            match parse(&rec[..cut]) {
                Err(HelloError::Incomplete(n)) => assert!(n > cut && n <= rec.len()),
                other => panic!("cut {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn reassembles_across_records() {
        let rec = build_hello(Some("split.example"));
        let msg = &rec[5..];
        let (a, b) = msg.split_at(10);
        let mut two = vec![22, 3, 1];
        two.extend_from_slice(&(a.len() as u16).to_be_bytes());
        two.extend_from_slice(a);
        two.extend_from_slice(&[22, 3, 1]);
        two.extend_from_slice(&(b.len() as u16).to_be_bytes());
        two.extend_from_slice(b);
        assert_eq!(
            parse(&two).expect("valid").sni.as_deref(),
            Some("split.example")
        );
    }

    #[test]
    fn rejects_what_does_not_add_up() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n\r\n"),
            Err(HelloError::Malformed(_))
        ));
        let mut rec = build_hello(Some("a.example"));
        let last = rec.len() - 1;
        rec[last] = b'/';
        assert!(matches!(parse(&rec), Err(HelloError::Malformed(_))));
        // A record claiming more than 2^14 bytes.
        assert!(matches!(
            parse(&[22, 3, 1, 0x40, 0x01]),
            Err(HelloError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_on_mutated_hellos(
            name in "[a-z0-9]{1,20}(\\.[a-z0-9]{1,20}){0,3}",
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        ) {
            let mut rec = build_hello(Some(&name));
            prop_assert_eq!(parse(&rec).expect("valid").sni, Some(name.clone()));
            for (i, b) in flips {
                let i = i % rec.len();
                rec[i] = b;
            }
            if let Ok(h) = parse(&rec) {
                prop_assert!(h.len <= rec.len());
            }
        }

        #[test]
        fn a_prefix_is_incomplete_or_malformed(
            name in "[a-z]{1,30}\\.test",
            cut in 0usize..200,
        ) {
            let rec = build_hello(Some(&name));
            let cut = cut.min(rec.len() - 1);
            prop_assert!(parse(&rec[..cut]).is_err());
        }
    }
}
