//! The DNS-tunnelling heuristic for one name.
//!
//! Tunnels (iodine, dnscat2, DNS-based VPNs sold to get round school filters)
//! carry data in the labels below their own domain: long runs of base32, hex or
//! base64 text, a new name for every packet. One such name proves little (CDNs
//! and anti-virus reputation lookups use hashed labels too), so this only says
//! whether a name *looks* like tunnel data; the filter counts such names per
//! client, only when they miss the cache (a tunnel never repeats a name; a
//! device repeating one odd name is no tunnel), and flags from
//! [`crate::clients::TUNNEL_THRESHOLD`] names a minute.

use crate::wire::QueryName;

/// A run of letters and digits (between hyphens) at least this long is worth a
/// closer look: words in host names are short, encoded data is not.
pub const LONG_RUN: usize = 24;
/// A name at least this long (as text) is suspicious: tunnels fill names up to
/// the 253-character limit to carry more.
pub const LONG_NAME: usize = 160;
/// Shannon entropy (bits per character) above which a long run reads as encoded
/// data: English-like runs of this length stay near 3.2, base32 reaches 4.3.
pub const HIGH_ENTROPY: f64 = 3.5;
/// Without digits (words run together, as in school names) only a run that is
/// nearly random letters counts.
pub const WORDLESS_ENTROPY: f64 = 4.0;

/// Whether `name` looks like a tunnel's data query.
pub fn looks_like_tunnel(name: &QueryName) -> bool {
    let text = name.text();
    if usize::from(name.longest_label()) < LONG_RUN && text.len() < LONG_NAME {
        return false; // the common case, decided without reading the labels
    }
    if text.len() >= LONG_NAME {
        return true;
    }
    // The data sits below the tunnel's registered domain: the last two labels
    // are the domain (a long brand name is not data).
    let labels = text.split('.').count();
    text.split('.')
        .take(labels.saturating_sub(2))
        .flat_map(|label| label.split(['-', '_']))
        .filter(|run| run.len() >= LONG_RUN)
        .any(|run| {
            let e = entropy(run.as_bytes());
            is_hex(run)
                || (e >= HIGH_ENTROPY && run.bytes().any(|b| b.is_ascii_digit()))
                || e >= WORDLESS_ENTROPY
        })
}

/// Hex with both digits and letters (dnscat2's encoding); its entropy tops out
/// at 4 bits, too close to text to tell by entropy alone.
fn is_hex(run: &str) -> bool {
    run.bytes().all(|b| b.is_ascii_hexdigit())
        && run.bytes().any(|b| b.is_ascii_digit())
        && run.bytes().any(|b| b.is_ascii_alphabetic())
}

/// Shannon entropy of the bytes, in bits per byte.
pub fn entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> QueryName {
        QueryName::from_text(s).expect("name")
    }

    #[test]
    fn ordinary_names_are_not_tunnels() {
        for n in [
            "www.bbc.co.uk",
            "outlook.office365.com",
            "d3c33hcgiwev3.cloudfront.net",
            "internal-myapp-load-balancer-12345.eu-west-2.elb.amazonaws.com",
            "this-is-a-rather-long-but-readable-hostname-for-school.example.org",
            "averyveryveryverylongbrandnamethatisjustletters.com",
            "www.theschoolofmathematicsandcomputing.sch.uk",
        ] {
            assert!(!looks_like_tunnel(&name(n)), "{n}");
        }
    }

    #[test]
    fn encoded_labels_are() {
        for n in [
            // base32, as iodine sends
            "paaaaaab2nmvxgc3lfmvzxi4tfonuw2zlxmfzwk3dpnzsxe5dsmvzxg5dxn5zgy.t.example.net",
            // hex, as dnscat2 sends
            "8e3a01b9c47d2f6a5e0b1c3d4f5a6b7c8d9e0f1a2b3c4d.tun.example.org",
        ] {
            assert!(looks_like_tunnel(&name(n)), "{n}");
        }
        let long = format!("{}.t.example", ["abcdefgh23"; 16].join("."));
        assert!(looks_like_tunnel(&name(&long)));
    }

    #[test]
    fn entropy_of_simple_strings() {
        assert_eq!(entropy(b"aaaa"), 0.0);
        assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
    }
}
