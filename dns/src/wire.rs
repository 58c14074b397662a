//! The DNS wire format (RFC 1035, EDNS RFC 6891, EDE RFC 8914), read and written
//! in place, without allocating.
//!
//! The hot path never builds a `hickory_proto::op::Message`: a query is parsed into
//! a [`Question`] (a view plus the name lowercased into a fixed buffer), and every
//! answer is written into one reused `Vec<u8>` by copying the client's own question
//! bytes (so 0x20 case randomisation round-trips) and appending records. Upstream
//! answers are only walked ([`scan_response`]) to find their TTL fields, so a cached
//! answer can be served by copying bytes and patching the ID and the TTLs. The
//! tests check all of this against hickory-proto's own parser.
//!
//! Every read is bounds-checked: no input can make these functions panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use arrayvec::ArrayVec;

/// The fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// The longest name on the wire, including the root label (RFC 1035 2.3.4).
pub const MAX_NAME_WIRE: usize = 255;
/// The longest name as dotted text (without the trailing dot).
pub const MAX_NAME_TEXT: usize = 253;
/// What a client without EDNS can receive over UDP.
pub const CLASSIC_UDP: usize = 512;
/// The largest UDP answer we send or ask for: the DNS flag day 2020 size, which
/// avoids IP fragmentation on every common path.
pub const EDNS_UDP: u16 = 1232;

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_MX: u16 = 15;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;
pub const TYPE_DNAME: u16 = 39;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_IXFR: u16 = 251;
pub const TYPE_AXFR: u16 = 252;
pub const TYPE_MAILB: u16 = 253;
pub const TYPE_MAILA: u16 = 254;
pub const CLASS_IN: u16 = 1;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;
pub const RCODE_REFUSED: u8 = 5;
/// BADVERS is 16: 0 in the header, 1 in the OPT record's extended-rcode byte.
pub const RCODE_BADVERS: u16 = 16;

/// The EDNS option code of an Extended DNS Error (RFC 8914).
pub const OPTION_EDE: u16 = 15;
/// The EDNS option code of Padding (RFC 7830).
pub const OPTION_PADDING: u16 = 12;
/// Encrypted queries are padded to a multiple of this many bytes (RFC 8467's
/// recommended block length for queries), so their lengths say little about
/// the names asked.
pub const QUERY_PAD_BLOCK: usize = 128;
/// EDE info-codes (RFC 8914 section 4).
pub const EDE_STALE_ANSWER: u16 = 3;
pub const EDE_BLOCKED: u16 = 15;
pub const EDE_FILTERED: u16 = 17;
pub const EDE_PROHIBITED: u16 = 18;
pub const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;

const FLAG_QR: u8 = 0x80;
const FLAG_AA: u8 = 0x04;
const FLAG_TC: u8 = 0x02;
const FLAG_RD: u8 = 0x01;
const FLAG_RA: u8 = 0x80;
const FLAG_AD: u8 = 0x20;
const FLAG_CD: u8 = 0x10;
/// The DO bit in the OPT record's TTL field.
const EDNS_DO: u32 = 0x8000;

/// What the client said about EDNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientEdns {
    /// The UDP payload size it can receive.
    pub payload: u16,
    pub version: u8,
    /// DNSSEC OK: the client wants RRSIGs.
    pub dnssec_ok: bool,
}

/// A query name, lowercased, both as wire labels (the cache key) and as dotted
/// text (what the classifier reads). Inline buffers, filled without zeroing
/// them first: no allocation and no 500-byte memset per query.
#[derive(Clone)]
pub struct QueryName {
    wire: ArrayVec<u8, MAX_NAME_WIRE>,
    text: ArrayVec<u8, MAX_NAME_TEXT>,
    labels: u8,
    longest_label: u8,
}

impl std::fmt::Debug for QueryName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QueryName({:?})", self.text())
    }
}

impl QueryName {
    fn empty() -> QueryName {
        QueryName {
            wire: ArrayVec::new(),
            text: ArrayVec::new(),
            labels: 0,
            longest_label: 0,
        }
    }

    /// Lowercase wire form, ending with the root label.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// Dotted text without the trailing dot; `""` for the root. Bytes that cannot
    /// be in a host name (anything but letters, digits, `-` and `_`, and dots
    /// inside a label) appear as `?`, so the classifier rejects the name instead of
    /// reading it as a different one.
    pub fn text(&self) -> &str {
        // Only ASCII is ever written to `text`.
        std::str::from_utf8(&self.text).unwrap_or("?")
    }

    pub fn longest_label(&self) -> u8 {
        self.longest_label
    }

    pub fn is_root(&self) -> bool {
        self.labels == 0
    }

    /// Reads the uncompressed name that starts at `start` in `packet`, returning
    /// it and the offset just past it; `None` for a truncated name, a label over
    /// 63 bytes (which includes compression pointers) or a name over 255 bytes.
    ///
    /// The labels are first walked for their lengths only; then the whole name
    /// is copied at once, lowercased in place, and the text made from the copy.
    /// Per label and per byte this is several times cheaper than appending
    /// label by label and byte by byte, and it is on every query's path.
    fn read(packet: &[u8], start: usize) -> Option<(QueryName, usize)> {
        let mut pos = start;
        let mut labels = 0u8;
        let mut longest_label = 0u8;
        loop {
            let len = *packet.get(pos)?;
            if len == 0 {
                break;
            }
            if len > 63 {
                return None;
            }
            pos += 1 + usize::from(len);
            // With its root label the name may be 255 bytes at most.
            if pos + 1 - start > MAX_NAME_WIRE {
                return None;
            }
            // At most 127 labels fit in 255 bytes.
            labels += 1;
            longest_label = longest_label.max(len);
        }
        let end = pos + 1;
        let mut name = QueryName::empty();
        name.labels = labels;
        name.longest_label = longest_label;
        name.wire.try_extend_from_slice(&packet[start..end]).ok()?;
        name.wire.make_ascii_lowercase();
        if labels > 0 {
            // The text is the wire form without its first length byte and the
            // root, each byte masked, then a dot where each later label starts.
            let wire_len = name.wire.len();
            name.text
                .try_extend_from_slice(&name.wire[1..wire_len - 1])
                .ok()?;
            for b in name.text.iter_mut() {
                *b = HOST_TEXT[usize::from(*b)];
            }
            let mut dot = usize::from(name.wire[0]);
            while dot < name.text.len() {
                let next = usize::from(name.wire[dot + 1]);
                name.text[dot] = b'.';
                dot += 1 + next;
            }
        }
        Some((name, end))
    }

    /// Builds one from dotted text (test helpers, the SafeSearch targets).
    pub fn from_text(text: &str) -> Option<QueryName> {
        let text = text.strip_suffix('.').unwrap_or(text);
        let mut wire = Vec::with_capacity(text.len() + 2);
        if !text.is_empty() {
            for label in text.split('.') {
                if label.is_empty() || label.len() > 63 {
                    return None;
                }
                wire.push(label.len() as u8);
                wire.extend_from_slice(label.as_bytes());
            }
        }
        wire.push(0);
        QueryName::read(&wire, 0).map(|(name, _)| name)
    }
}

/// What each byte of a lowercased label stands for in a name's text: itself
/// if it can be in a host name (letters, digits, `-` and `_`), else `?`.
static HOST_TEXT: [u8; 256] = {
    let mut table = [b'?'; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_' {
            table[b] = c;
        }
        b += 1;
    }
    table
};

/// A parsed client query: the view the hot path works on.
#[derive(Clone, Debug)]
pub struct Question {
    pub id: u16,
    /// Recursion desired and checking disabled, copied into the answer.
    pub rd: bool,
    pub cd: bool,
    pub name: QueryName,
    pub qtype: u16,
    pub qclass: u16,
    /// Offset just past the question (header + name + type + class).
    pub question_end: usize,
    pub edns: Option<ClientEdns>,
}

impl Question {
    /// The largest answer this client takes over UDP.
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => usize::from(e.payload.clamp(CLASSIC_UDP as u16, EDNS_UDP)),
            None => CLASSIC_UDP,
        }
    }

    pub fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|e| e.dnssec_ok)
    }
}

/// Why a packet is not a query we answer normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Not even a header, or a response: answering could start a loop with a
    /// spoofed source, so say nothing (RFC 1035 leaves this to us).
    Silent,
    /// The header is readable: answer with this rcode (FORMERR, NOTIMP) and no
    /// sections.
    Reply { rcode: u8 },
    /// EDNS version we do not speak: BADVERS (RFC 6891 6.1.3).
    BadVersion,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// The DNS ID of a packet, if it has one.
pub fn packet_id(packet: &[u8]) -> Option<u16> {
    u16_at(packet, 0)
}

/// Parses a client query. `Err` says how to answer a packet that is not one.
pub fn parse_query(packet: &[u8]) -> Result<Question, Malformed> {
    if packet.len() < HEADER_LEN {
        return Err(Malformed::Silent);
    }
    let flags = packet[2];
    if flags & FLAG_QR != 0 {
        return Err(Malformed::Silent);
    }
    let opcode = (flags >> 3) & 0x0f;
    let qdcount = u16_at(packet, 4).unwrap_or(0);
    let counts = [
        u16_at(packet, 6).unwrap_or(0),
        u16_at(packet, 8).unwrap_or(0),
        u16_at(packet, 10).unwrap_or(0),
    ];
    if opcode != 0 {
        return Err(Malformed::Reply {
            rcode: RCODE_NOTIMP,
        });
    }
    let formerr = Malformed::Reply {
        rcode: RCODE_FORMERR,
    };
    if qdcount != 1 {
        return Err(formerr);
    }
    // Compression pointers and extended label types have no place in a
    // question (the only name before it is none): `read` refuses them.
    let (name, pos) = QueryName::read(packet, HEADER_LEN).ok_or(formerr)?;
    let qtype = u16_at(packet, pos).ok_or(formerr)?;
    let qclass = u16_at(packet, pos + 2).ok_or(formerr)?;
    let question_end = pos + 4;
    // Answer and authority records in a query are unusual but legal; the
    // additional section may carry one OPT record.
    let mut at = question_end;
    let mut edns = None;
    let total = u32::from(counts[0]) + u32::from(counts[1]) + u32::from(counts[2]);
    for i in 0..total {
        let name_end = skip_name(packet, at).ok_or(formerr)?;
        let rtype = u16_at(packet, name_end).ok_or(formerr)?;
        let class = u16_at(packet, name_end + 2).ok_or(formerr)?;
        let ttl = u32_at(packet, name_end + 4).ok_or(formerr)?;
        let rdlen = usize::from(u16_at(packet, name_end + 8).ok_or(formerr)?);
        let end = name_end + 10 + rdlen;
        if end > packet.len() {
            return Err(formerr);
        }
        let in_additional = i >= u32::from(counts[0]) + u32::from(counts[1]);
        if rtype == TYPE_OPT {
            // One OPT, in the additional section, owned by the root (RFC 6891).
            if !in_additional || edns.is_some() || name_end != at + 1 {
                return Err(formerr);
            }
            edns = Some(ClientEdns {
                payload: class,
                version: (ttl >> 16) as u8,
                dnssec_ok: ttl & EDNS_DO != 0,
            });
        }
        at = end;
    }
    if edns.is_some_and(|e| e.version != 0) {
        return Err(Malformed::BadVersion);
    }
    Ok(Question {
        id: u16_at(packet, 0).unwrap_or(0),
        rd: flags & FLAG_RD != 0,
        cd: packet[3] & FLAG_CD != 0,
        name,
        qtype,
        qclass,
        question_end,
        edns,
    })
}

/// The offset just past a (possibly compressed) name starting at `at`.
pub fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => {
                at += 1 + usize::from(len);
                if at > msg.len() {
                    return None;
                }
            }
            0xc0 => {
                msg.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
    }
}

/// Appends the name at `at` to `out` uncompressed (following pointers, at most
/// as many as fit in a name, so a pointer loop ends). Returns the offset just past
/// the name in `msg`.
pub fn expand_name(msg: &[u8], at: usize, out: &mut Vec<u8>) -> Option<usize> {
    let mut pos = at;
    let mut end = None;
    let mut written = 0usize;
    let mut jumps = 0;
    loop {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                out.push(0);
                return Some(end.unwrap_or(pos + 1));
            }
            0x00 => {
                let label = msg.get(pos..pos + 1 + usize::from(len))?;
                written += label.len();
                if written + 1 > MAX_NAME_WIRE {
                    return None;
                }
                out.extend_from_slice(label);
                pos += label.len();
            }
            0xc0 => {
                let target = usize::from(u16_at(msg, pos)? & 0x3fff);
                end.get_or_insert(pos + 2);
                jumps += 1;
                if jumps > 127 || target >= pos {
                    // Pointers must point backwards (RFC 1035 4.1.4 implies it;
                    // every encoder does it); forwards is a loop or garbage.
                    return None;
                }
                pos = target;
            }
            _ => return None,
        }
    }
}

/// Compares the question of a response with what was asked, ignoring case.
pub fn same_question(msg: &[u8], name_wire: &[u8], qtype: u16, qclass: u16) -> bool {
    if u16_at(msg, 4) != Some(1) {
        return false;
    }
    let Some(got) = msg.get(HEADER_LEN..HEADER_LEN + name_wire.len()) else {
        return false;
    };
    got.eq_ignore_ascii_case(name_wire)
        && u16_at(msg, HEADER_LEN + name_wire.len()) == Some(qtype)
        && u16_at(msg, HEADER_LEN + name_wire.len() + 2) == Some(qclass)
}

pub fn rcode_of(msg: &[u8]) -> u8 {
    msg.get(3).map_or(RCODE_SERVFAIL, |b| b & 0x0f)
}

pub fn is_truncated(msg: &[u8]) -> bool {
    msg.get(2).is_some_and(|b| b & FLAG_TC != 0)
}

pub fn is_response(msg: &[u8]) -> bool {
    msg.get(2).is_some_and(|b| b & FLAG_QR != 0)
}

pub fn answer_count(msg: &[u8]) -> u16 {
    u16_at(msg, 6).unwrap_or(0)
}

fn put_u16(out: &mut [u8], at: usize, v: u16) {
    if let Some(s) = out.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

fn bump(out: &mut [u8], at: usize) {
    let v = u16_at(out, at).unwrap_or(0).saturating_add(1);
    put_u16(out, at, v);
}

/// Starts an answer to `q` in `out`: the header and the client's own question
/// bytes. Recursion available; `rd`/`cd` echoed.
pub fn begin_answer(out: &mut Vec<u8>, query: &[u8], q: &Question, rcode: u8) {
    out.clear();
    out.extend_from_slice(&q.id.to_be_bytes());
    out.push(FLAG_QR | if q.rd { FLAG_RD } else { 0 });
    out.push(FLAG_RA | if q.cd { FLAG_CD } else { 0 } | (rcode & 0x0f));
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(query.get(HEADER_LEN..q.question_end).unwrap_or(&[]));
}

/// An answer to a packet that did not parse as a query: the header of the
/// packet with QR set and `rcode`, and the question when given.
pub fn error_answer(out: &mut Vec<u8>, packet: &[u8], rcode: u8, question_end: Option<usize>) {
    out.clear();
    let id = packet_id(packet).unwrap_or(0);
    let flags = packet.get(2).copied().unwrap_or(0);
    out.extend_from_slice(&id.to_be_bytes());
    // Opcode and RD echoed, as RFC 1035 4.1.1 asks of a response.
    out.push(FLAG_QR | (flags & 0x79));
    out.push(FLAG_RA | (rcode & 0x0f));
    let qd = u16::from(question_end.is_some());
    out.extend_from_slice(&qd.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    if let Some(end) = question_end {
        out.extend_from_slice(packet.get(HEADER_LEN..end).unwrap_or(&[]));
    }
}

/// Appends an answer record owned by the question's name (a pointer to offset 12).
fn push_answer_header(out: &mut Vec<u8>, rtype: u16, ttl: u32, rdlen: u16) {
    out.extend_from_slice(&[0xc0, 0x0c]);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&rdlen.to_be_bytes());
    bump(out, 6);
}

pub fn push_a(out: &mut Vec<u8>, ttl: u32, ip: Ipv4Addr) {
    push_answer_header(out, TYPE_A, ttl, 4);
    out.extend_from_slice(&ip.octets());
}

pub fn push_aaaa(out: &mut Vec<u8>, ttl: u32, ip: Ipv6Addr) {
    push_answer_header(out, TYPE_AAAA, ttl, 16);
    out.extend_from_slice(&ip.octets());
}

/// `question name CNAME target` (target in uncompressed wire form).
pub fn push_cname(out: &mut Vec<u8>, ttl: u32, target_wire: &[u8]) {
    push_answer_header(out, TYPE_CNAME, ttl, target_wire.len() as u16);
    out.extend_from_slice(target_wire);
}

/// Appends our OPT record (payload [`EDNS_UDP`], DO echoed), with an Extended DNS
/// Error when given. `extended_rcode` is the upper 8 bits of a 12-bit rcode.
pub fn push_opt(out: &mut Vec<u8>, dnssec_ok: bool, extended_rcode: u8, ede: Option<(u16, &str)>) {
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&EDNS_UDP.to_be_bytes());
    out.push(extended_rcode);
    out.push(0); // version 0
    out.extend_from_slice(&(if dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
    match ede {
        Some((code, text)) => {
            // Keep the text short: the answer must still fit a small UDP payload.
            let text = truncate_utf8(text, 200);
            let len = 2 + text.len() as u16;
            out.extend_from_slice(&(4 + len).to_be_bytes());
            out.extend_from_slice(&OPTION_EDE.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&code.to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        None => out.extend_from_slice(&0u16.to_be_bytes()),
    }
    bump(out, 10);
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Cuts an answer that is too big for the client's UDP payload down to the
/// header and question with TC set, so the client retries over TCP
/// (RFC 1035 4.2.1, RFC 7766).
pub fn truncate_answer(out: &mut Vec<u8>, question_end: usize) {
    out.truncate(question_end);
    if let Some(b) = out.get_mut(2) {
        *b |= FLAG_TC;
    }
    for at in [6, 8, 10] {
        put_u16(out, at, 0);
    }
}

/// Writes the query we send upstream: our ID, RD set, the name as given,
/// EDNS with our payload size, DO and CD as the client asked.
pub fn write_upstream_query(
    out: &mut Vec<u8>,
    id: u16,
    name_wire: &[u8],
    qtype: u16,
    qclass: u16,
    dnssec_ok: bool,
    cd: bool,
) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    out.push(FLAG_RD);
    out.push(if cd { FLAG_CD } else { 0 });
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
    out.extend_from_slice(name_wire);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&qclass.to_be_bytes());
    push_opt(out, dnssec_ok, 0, None);
    // push_opt bumped ARCOUNT to 2; this query has exactly one additional.
    put_u16(out, 10, 1);
}

/// Pads a query [`write_upstream_query`] wrote to a multiple of `block` bytes
/// with an EDNS Padding option (RFC 7830) in its OPT record, which is last.
pub fn pad_query(out: &mut Vec<u8>, block: usize) {
    // The OPT record's RDLENGTH is the query's last two bytes, and 0.
    let Some(rdlen_at) = out.len().checked_sub(2) else {
        return;
    };
    let unpadded = out.len() + 4;
    let pad = (block - unpadded % block) % block;
    let (Ok(pad16), Ok(rdlen)) = (u16::try_from(pad), u16::try_from(4 + pad)) else {
        return;
    };
    out.extend_from_slice(&OPTION_PADDING.to_be_bytes());
    out.extend_from_slice(&pad16.to_be_bytes());
    out.resize(out.len() + pad, 0);
    put_u16(out, rdlen_at, rdlen);
}

/// Where the TTL fields of a response are and what they said, found by
/// [`scan_response`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scanned {
    pub rcode: u8,
    pub answers: u16,
    /// Offset just past the question.
    pub question_end: usize,
    /// Offset of each cacheable record's TTL field, with the TTL it carried
    /// (negative answers: the SOA's TTL capped by its MINIMUM, RFC 2308 5).
    pub ttls: Vec<(u16, u32)>,
    /// Where the message ends once the OPT record (never cached or forwarded,
    /// RFC 6891 6.1.1) is cut off, and how many additional records stay.
    pub keep_len: usize,
    pub keep_additional: u16,
    /// The smallest TTL of any record; for a negative answer the SOA's.
    pub min_ttl: Option<u32>,
    /// A negative answer (NXDOMAIN or no data) with an SOA to time it.
    pub negative_soa: bool,
}

/// Walks an upstream response: finds every record's TTL, the OPT record and the
/// SOA of a negative answer. `None` if the message does not parse.
pub fn scan_response(msg: &[u8]) -> Option<Scanned> {
    let qd = u16_at(msg, 4)?;
    let an = u16_at(msg, 6)?;
    let ns = u16_at(msg, 8)?;
    let ar = u16_at(msg, 10)?;
    let mut at = HEADER_LEN;
    for _ in 0..qd {
        at = skip_name(msg, at)? + 4;
    }
    if at > msg.len() {
        return None;
    }
    let question_end = at;
    let mut s = Scanned {
        rcode: rcode_of(msg),
        answers: an,
        question_end,
        ttls: Vec::with_capacity(usize::from(an) + usize::from(ns) + 1),
        keep_len: msg.len(),
        keep_additional: ar,
        min_ttl: None,
        negative_soa: false,
    };
    let total = u32::from(an) + u32::from(ns) + u32::from(ar);
    let additional_from = u32::from(an) + u32::from(ns);
    let mut opt_seen = false;
    let mut additional_start = None;
    for i in 0..total {
        if i == additional_from {
            additional_start = Some(at);
        }
        let rr_start = at;
        let name_end = skip_name(msg, at)?;
        let rtype = u16_at(msg, name_end)?;
        let ttl = u32_at(msg, name_end + 4)?;
        let rdlen = usize::from(u16_at(msg, name_end + 8)?);
        let rdata = name_end + 10;
        let end = rdata + rdlen;
        if end > msg.len() {
            return None;
        }
        if rtype == TYPE_OPT {
            if opt_seen {
                return None;
            }
            opt_seen = true;
            if end == msg.len() {
                s.keep_len = rr_start;
                s.keep_additional = ar - 1;
            } else {
                // OPT in the middle of the additional section (legal, unusual):
                // additional records are optional, so drop the whole section.
                let start = additional_start.unwrap_or(rr_start);
                s.keep_len = start;
                s.keep_additional = 0;
                s.ttls.retain(|(off, _)| usize::from(*off) < start);
            }
        } else if s.keep_len == msg.len() || end <= s.keep_len {
            // RFC 2181 8: a TTL with the high bit set means zero.
            let mut ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
            let in_authority = i >= u32::from(an) && i < additional_from;
            if rtype == TYPE_SOA && in_authority && an == 0 {
                // Negative answer: the SOA's MINIMUM (the last 4 bytes of its
                // RDATA) caps how long the absence may be cached.
                if rdlen >= 20 {
                    let minimum = u32_at(msg, end - 4)?;
                    ttl = ttl.min(minimum);
                    s.negative_soa = true;
                }
            }
            let off = u16::try_from(name_end + 4).ok()?;
            s.ttls.push((off, ttl));
            s.min_ttl = Some(s.min_ttl.map_or(ttl, |m: u32| m.min(ttl)));
        }
        at = end;
    }
    if at != msg.len() && !opt_seen {
        // Trailing bytes after the last record: tolerate, but do not keep them.
        s.keep_len = s.keep_len.min(at);
    }
    Some(s)
}

/// Appends the answer section records of `msg` (already scanned) to `out` with
/// every name expanded, so they can follow a different question; each record's
/// TTL is replaced by `ttl`. Returns how many were appended.
pub fn copy_answers_expanded(
    msg: &[u8],
    question_end: usize,
    ttl: u32,
    out: &mut Vec<u8>,
) -> Option<u16> {
    let an = u16_at(msg, 6)?;
    let mut at = question_end;
    for _ in 0..an {
        at = expand_name(msg, at, out)?;
        let rtype = u16_at(msg, at)?;
        let fixed = msg.get(at..at + 10)?;
        let rdlen = usize::from(u16_at(msg, at + 8)?);
        let rdata = at + 10;
        let end = rdata + rdlen;
        if end > msg.len() {
            return None;
        }
        out.extend_from_slice(&fixed[..4]);
        out.extend_from_slice(&ttl.to_be_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0, 0]);
        let data_start = out.len();
        // Names inside RDATA may be compressed only in the RFC 1035 types
        // (RFC 3597 4); expand those, copy the rest as they are.
        match rtype {
            TYPE_CNAME | TYPE_NS | TYPE_PTR | TYPE_DNAME => {
                expand_name(msg, rdata, out)?;
            }
            TYPE_MX => {
                out.extend_from_slice(msg.get(rdata..rdata + 2)?);
                expand_name(msg, rdata + 2, out)?;
            }
            TYPE_SRV => {
                out.extend_from_slice(msg.get(rdata..rdata + 6)?);
                expand_name(msg, rdata + 6, out)?;
            }
            TYPE_SOA => {
                let m = expand_name(msg, rdata, out)?;
                let r = expand_name(msg, m, out)?;
                out.extend_from_slice(msg.get(r..r + 20)?);
            }
            _ => out.extend_from_slice(msg.get(rdata..end)?),
        }
        let written = u16::try_from(out.len() - data_start).ok()?;
        put_u16(out, len_at, written);
        at = end;
    }
    let count = u16_at(out, 6).unwrap_or(0).saturating_add(an);
    put_u16(out, 6, count);
    Some(an)
}

/// Patches the ID and the client-visible flags of a copied answer.
pub fn patch_header(out: &mut [u8], q: &Question) {
    put_u16(out, 0, q.id);
    if let Some(b) = out.get_mut(2) {
        *b = (*b & !(FLAG_RD | FLAG_AA | FLAG_TC)) | FLAG_QR | if q.rd { FLAG_RD } else { 0 };
    }
    if let Some(b) = out.get_mut(3) {
        // AD only passes through for a client that asked for DNSSEC (RFC 6840 5.8).
        let ad = if q.dnssec_ok() { *b & FLAG_AD } else { 0 };
        *b = (*b & 0x0f) | FLAG_RA | ad | if q.cd { FLAG_CD } else { 0 };
    }
}

pub fn put_u32(out: &mut [u8], at: usize, v: u32) {
    if let Some(s) = out.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

pub fn set_additional(out: &mut [u8], n: u16) {
    put_u16(out, 10, n);
}

/// The name of a query type for events (`A`, `AAAA`, `HTTPS`), or `TYPE65280`
/// (RFC 3597) for one hickory has no name for, where its `Display` says only
/// `Unknown`. Known names are copied from hickory's table, without the
/// formatting machinery: this is on every DNS event. Into `out`, cleared
/// first, in the room it has (an event's reused string).
pub fn write_qtype_name(qtype: u16, out: &mut String) {
    use hickory_proto::rr::RecordType;
    use std::fmt::Write;
    out.clear();
    match RecordType::from(qtype) {
        RecordType::Unknown(n) => {
            let _ = write!(out, "TYPE{n}");
        }
        known => out.push_str(<&'static str>::from(known)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::{Name, RecordType};

    #[test]
    fn query_types_are_named_and_unknown_ones_numbered() {
        let mut out = "left over".to_owned();
        for (qtype, name) in [
            (1, "A"),
            (28, "AAAA"),
            (65, "HTTPS"),
            (65_280, "TYPE65280"),
            (1, "A"),
        ] {
            write_qtype_name(qtype, &mut out);
            assert_eq!(out, name);
        }
    }

    fn query(name: &str, rtype: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            e.set_dnssec_ok(true);
            m.set_edns(e);
        }
        m.to_vec().expect("encode")
    }

    #[test]
    fn padded_queries_are_whole_blocks_hickory_reads() {
        for name in [
            "a.",
            "www.example.com.",
            &format!("{}.example.", "x".repeat(63)),
        ] {
            let n = Name::from_ascii(name).expect("name");
            let mut wire_name = Vec::new();
            for label in n.iter() {
                wire_name.push(label.len() as u8);
                wire_name.extend_from_slice(label);
            }
            wire_name.push(0);
            let mut q = Vec::new();
            write_upstream_query(&mut q, 7, &wire_name, 1, 1, true, false);
            let plain = q.len();
            pad_query(&mut q, QUERY_PAD_BLOCK);
            assert_eq!(q.len() % QUERY_PAD_BLOCK, 0, "{name}: {} bytes", q.len());
            assert!(q.len() >= plain + 4);
            let m = Message::from_vec(&q).expect("hickory reads the padded query");
            assert_eq!(m.queries[0].name(), &n);
            let edns = m.edns.as_ref().expect("OPT kept");
            assert!(edns.flags().dnssec_ok, "DO bit kept");
            assert!(
                edns.options()
                    .get(hickory_proto::rr::rdata::opt::EdnsCode::Padding)
                    .is_some(),
                "{name}: a Padding option"
            );
            assert_eq!(m.additionals.len(), 0, "the OPT is the only additional");
        }
    }

    #[test]
    fn parses_a_query_like_hickory_does() {
        let q = parse_query(&query("WwW.Example.COM.", RecordType::AAAA, true)).expect("parse");
        assert_eq!(q.id, 0x1234);
        assert!(q.rd);
        assert_eq!(q.name.text(), "www.example.com");
        assert_eq!(q.name.wire(), b"\x03www\x07example\x03com\x00");
        assert_eq!(q.qtype, 28);
        assert_eq!(
            q.edns,
            Some(ClientEdns {
                payload: 4096,
                version: 0,
                dnssec_ok: true
            })
        );
        assert_eq!(q.udp_limit(), usize::from(EDNS_UDP));
        let plain = parse_query(&query("a.b.", RecordType::A, false)).expect("parse");
        assert_eq!(plain.edns, None);
        assert_eq!(plain.udp_limit(), 512);
    }

    /// Any labels (bytes of every value, any case, up to the length limits):
    /// the wire form is the labels lowercased, the text the same with `?` for
    /// what cannot be in a host name, and a name past 255 bytes is refused.
    #[test]
    fn names_are_lowercased_and_masked_byte_for_byte() {
        use proptest::prelude::*;
        let labels =
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..=63), 0..8);
        proptest!(|(labels in labels, offset in 0usize..4, tail in any::<u8>())| {
            // The name at `offset` in a packet, followed by one more byte.
            let mut packet = vec![0xff; offset];
            let mut wire = Vec::new();
            let mut text = String::new();
            let mut fits = true;
            for l in &labels {
                packet.push(l.len() as u8);
                packet.extend_from_slice(l);
                if wire.len() + l.len() + 2 > MAX_NAME_WIRE {
                    fits = false;
                }
                wire.push(l.len() as u8);
                wire.extend(l.iter().map(u8::to_ascii_lowercase));
                if !text.is_empty() {
                    text.push('.');
                }
                text.extend(l.iter().map(|b| match b.to_ascii_lowercase() {
                    c @ (b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_') => char::from(c),
                    _ => '?',
                }));
            }
            packet.push(0);
            wire.push(0);
            packet.push(tail);
            let read = QueryName::read(&packet, offset);
            if !fits {
                prop_assert!(read.is_none());
                return Ok(());
            }
            let (name, end) = read.expect("a name that fits is read");
            prop_assert_eq!(end, packet.len() - 1);
            prop_assert_eq!(name.wire(), &wire[..]);
            prop_assert_eq!(name.text(), text.as_str());
            prop_assert_eq!(usize::from(name.labels), labels.len());
            let longest = labels.iter().map(Vec::len).max().unwrap_or(0);
            prop_assert_eq!(usize::from(name.longest_label()), longest);
            // Cut anywhere inside, it is refused.
            for cut in offset..packet.len() - 1 {
                prop_assert!(QueryName::read(&packet[..cut], offset).is_none());
            }
        });
    }

    #[test]
    fn odd_bytes_in_a_label_cannot_pass_as_a_host_name() {
        let mut packet = query("ab.example.com.", RecordType::A, false);
        packet[13] = b'.'; // the label "ab" becomes ".b"
        let q = parse_query(&packet).expect("parse");
        assert_eq!(q.name.text(), "?b.example.com");
    }

    #[test]
    fn malformed_packets_are_classified() {
        assert!(matches!(parse_query(&[1, 2, 3]), Err(Malformed::Silent)));
        let mut response = query("a.", RecordType::A, false);
        response[2] |= 0x80;
        assert!(matches!(parse_query(&response), Err(Malformed::Silent)));
        let mut notimp = query("a.", RecordType::A, false);
        notimp[2] |= 2 << 3;
        assert!(matches!(
            parse_query(&notimp),
            Err(Malformed::Reply {
                rcode: RCODE_NOTIMP,
                ..
            })
        ));
        let good = query("abc.example.", RecordType::A, false);
        for cut in HEADER_LEN..good.len() {
            assert!(
                matches!(
                    parse_query(&good[..cut]),
                    Err(Malformed::Reply {
                        rcode: RCODE_FORMERR,
                        ..
                    })
                ),
                "cut at {cut}"
            );
        }
        let mut pointer = good.clone();
        pointer[12] = 0xc0;
        assert!(parse_query(&pointer).is_err());
    }

    #[test]
    fn impossible_parse_is_debuggable() {
        let n = QueryName::from_text("Mask.iCloud.com.").expect("name");
        assert_eq!(n.text(), "mask.icloud.com");
        assert_eq!(format!("{n:?}"), "QueryName(\"mask.icloud.com\")");
        assert!(QueryName::from_text("").expect("root").is_root());
        assert!(QueryName::from_text("a..b").is_none());
    }

    #[test]
    fn block_answer_reads_back_in_hickory() {
        let packet = query("bet365.com.", RecordType::A, true);
        let q = parse_query(&packet).expect("parse");
        let mut out = Vec::new();
        begin_answer(&mut out, &packet, &q, RCODE_NOERROR);
        push_a(&mut out, 60, Ipv4Addr::new(10, 0, 0, 1));
        push_opt(&mut out, false, 0, Some((EDE_FILTERED, "gambling")));
        let m = Message::from_vec(&out).expect("hickory parses our answer");
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, 60);
        let edns = m.edns.expect("edns");
        let opt = edns.options().as_ref();
        assert!(format!("{opt:?}").contains("15"), "{opt:?}");
    }

    #[test]
    fn scan_finds_ttls_and_cuts_the_opt_record() {
        let mut m = Message::from_vec(&query("x.example.", RecordType::A, true)).expect("q");
        m.metadata.message_type = hickory_proto::op::MessageType::Response;
        let name = Name::from_ascii("x.example.").expect("name");
        m.add_answer(hickory_proto::rr::Record::from_rdata(
            name.clone(),
            300,
            hickory_proto::rr::RData::A(Ipv4Addr::new(192, 0, 2, 1).into()),
        ));
        m.add_answer(hickory_proto::rr::Record::from_rdata(
            name,
            100,
            hickory_proto::rr::RData::A(Ipv4Addr::new(192, 0, 2, 2).into()),
        ));
        let wire = m.to_vec().expect("encode");
        let s = scan_response(&wire).expect("scan");
        assert_eq!(s.answers, 2);
        assert_eq!(s.min_ttl, Some(100));
        assert_eq!(s.ttls.len(), 2);
        assert_eq!(s.keep_additional, 0);
        assert!(s.keep_len < wire.len());
        let kept = &wire[..s.keep_len];
        let mut kept = kept.to_vec();
        set_additional(&mut kept, 0);
        let back = Message::from_vec(&kept).expect("still a message");
        assert!(back.edns.is_none());
        assert_eq!(back.answers.len(), 2);
    }

    /// A response with compressed names in the answers (CNAME, MX, SOA) and an
    /// OPT record: the richest message the readers below are given.
    fn rich_response() -> Vec<u8> {
        use hickory_proto::rr::rdata::{CNAME, MX, SOA};
        use hickory_proto::rr::{RData, Record};
        let mut m = Message::from_vec(&query("www.example.com.", RecordType::A, true)).expect("q");
        m.metadata.message_type = hickory_proto::op::MessageType::Response;
        let www = Name::from_ascii("www.example.com.").expect("name");
        let target = Name::from_ascii("cdn.example.com.").expect("name");
        let apex = Name::from_ascii("example.com.").expect("name");
        m.add_answer(Record::from_rdata(
            www,
            60,
            RData::CNAME(CNAME(target.clone())),
        ));
        m.add_answer(Record::from_rdata(
            target.clone(),
            30,
            RData::A(Ipv4Addr::new(192, 0, 2, 7).into()),
        ));
        m.add_answer(Record::from_rdata(
            apex.clone(),
            90,
            RData::MX(MX::new(10, target)),
        ));
        m.add_authority(Record::from_rdata(
            apex.clone(),
            300,
            RData::SOA(SOA::new(apex.clone(), apex, 1, 2, 3, 4, 5)),
        ));
        m.to_vec().expect("encode")
    }

    /// Every reader of untrusted bytes (a client's query, an upstream's answer)
    /// on any input: arbitrary bytes, and real messages with bytes changed or
    /// cut short. None may panic, and what they accept must be consistent.
    #[test]
    fn no_bytes_make_the_readers_panic() {
        use proptest::prelude::*;
        let seeds = [
            query("www.example.com.", RecordType::A, true),
            query("a.b.", RecordType::AAAA, false),
            rich_response(),
        ];
        let input = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            (
                0..seeds.len(),
                proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
                proptest::option::of(any::<usize>())
            )
                .prop_map(move |(seed, changes, cut)| {
                    let mut bytes = seeds[seed].clone();
                    for (at, b) in changes {
                        let at = at % bytes.len();
                        bytes[at] = b;
                    }
                    if let Some(cut) = cut {
                        bytes.truncate(cut % (bytes.len() + 1));
                    }
                    bytes
                }),
        ];
        proptest!(ProptestConfig::with_cases(4096), |(bytes in input)| {
            if let Ok(q) = parse_query(&bytes) {
                prop_assert!(q.question_end <= bytes.len());
                prop_assert!(q.name.wire().len() <= MAX_NAME_WIRE);
                prop_assert_eq!(q.name.wire().last(), Some(&0));
                prop_assert!(q.name.text().len() <= MAX_NAME_TEXT);
                let mut out = Vec::new();
                begin_answer(&mut out, &bytes, &q, RCODE_NOERROR);
                push_opt(&mut out, q.edns.is_some_and(|e| e.dnssec_ok), 0, Some((EDE_BLOCKED, "x")));
                prop_assert!(Message::from_vec(&out).is_ok(), "our answer must parse");
            }
            let _ = packet_id(&bytes);
            let _ = (rcode_of(&bytes), is_truncated(&bytes), is_response(&bytes));
            let _ = same_question(&bytes, b"\x03www\x07example\x03com\x00", 1, 1);
            for at in [HEADER_LEN, bytes.len() / 2, bytes.len()] {
                if let Some(end) = skip_name(&bytes, at) {
                    prop_assert!(end <= bytes.len());
                }
                let mut name = Vec::new();
                if expand_name(&bytes, at, &mut name).is_some() {
                    prop_assert!(name.len() <= MAX_NAME_WIRE);
                }
            }
            if let Some(scanned) = scan_response(&bytes) {
                prop_assert!(scanned.question_end <= bytes.len());
                prop_assert!(scanned.keep_len <= bytes.len());
                let mut out = bytes[..scanned.question_end].to_vec();
                let _ = copy_answers_expanded(&bytes, scanned.question_end, 60, &mut out);
            }
        });
    }
}
