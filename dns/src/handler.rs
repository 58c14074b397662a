//! The policy handler: the first link of the chain. From the classifier's
//! verdict it either answers the query itself (blocked names, bypass canaries) or
//! passes it on to the forwarder, plainly or as a SafeSearch rewrite.

use std::net::{Ipv4Addr, Ipv6Addr};

use schoolgate_classifier::config::{BlockAnswer, DnsConfig};
use schoolgate_classifier::{Category, Policy, RoleId, Rule, Verdict};

use crate::verdicts::FlowKind;
use crate::wire::{self, QueryName, Question};

/// Names a device asks to learn whether the network wants it to keep using the
/// network's resolver. Answered NXDOMAIN for every role that blocks `doh`,
/// whatever the lists say:
/// - Firefox disables its DNS-over-HTTPS when `use-application-dns.net` does not
///   resolve (Mozilla's canary domain);
/// - Apple devices turn iCloud Private Relay off when `mask.icloud.com` and
///   `mask-h2.icloud.com` get a negative answer (Apple's guidance for networks).
pub const CANARIES: [&str; 3] = [
    "use-application-dns.net",
    "mask.icloud.com",
    "mask-h2.icloud.com",
];

/// Categories blocked as a matter of security or law, answered with EDE
/// "Blocked" (15); everything else a role filters gets "Filtered" (17).
const SECURITY: [Category; 6] = [
    Category::Illegal,
    Category::Malware,
    Category::Phishing,
    Category::Hacking,
    Category::Cryptomining,
    Category::Stalkerware,
];

/// The handler's settings, read from `[dns]` at start.
#[derive(Clone, Debug)]
pub struct BlockSettings {
    pub answer: BlockAnswer,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    pub ttl: u32,
}

impl BlockSettings {
    pub fn from_config(c: &DnsConfig) -> BlockSettings {
        BlockSettings {
            answer: c.block_answer,
            ipv4: c.block_page_ipv4,
            ipv6: c.block_page_ipv6,
            ttl: c.block_ttl,
        }
    }
}

/// Decides the flow for a verdict: answer here (blocked, canary), forward with
/// a SafeSearch rewrite, or forward.
pub fn flow(policy: &Policy, role: RoleId, name: &QueryName, verdict: &Verdict) -> FlowKind {
    if is_canary(name) && (verdict.is_blocked() || policy.role(role).block.contains(Category::Doh))
    {
        return FlowKind::Block { canary: true };
    }
    if verdict.is_blocked() {
        return FlowKind::Block { canary: false };
    }
    // SafeSearch stays on even for a name on the role's local allow list.
    match verdict.rewrite {
        Some(rw) if QueryName::from_text(rw.cname).is_some_and(|t| !t.is_root()) => {
            FlowKind::Rewrite(rw.cname)
        }
        _ => FlowKind::Forward,
    }
}

pub fn is_canary(name: &QueryName) -> bool {
    CANARIES.contains(&name.text())
}

/// Writes the block answer: the block page's address for A/AAAA (or NXDOMAIN,
/// per config; always for a canary), an empty NOERROR for every other type so
/// nothing of the real name leaks, and an Extended DNS Error saying why when
/// the client speaks EDNS. Returns the rcode.
pub fn write_block(
    out: &mut Vec<u8>,
    packet: &[u8],
    q: &Question,
    settings: &BlockSettings,
    verdict: &Verdict,
    canary: bool,
) -> u8 {
    let nxdomain = canary || settings.answer == BlockAnswer::Nxdomain;
    let rcode = if nxdomain {
        wire::RCODE_NXDOMAIN
    } else {
        wire::RCODE_NOERROR
    };
    wire::begin_answer(out, packet, q, rcode);
    if !nxdomain && q.qclass == wire::CLASS_IN {
        match (q.qtype, settings.ipv6) {
            (wire::TYPE_A, _) => wire::push_a(out, settings.ttl, settings.ipv4),
            (wire::TYPE_AAAA, Some(v6)) => wire::push_aaaa(out, settings.ttl, v6),
            _ => {}
        }
    }
    if let Some(edns) = q.edns {
        let code = ede_code(verdict);
        let text = if canary {
            format!(
                "schoolgate: encrypted DNS is not allowed on this network ({})",
                q.name.text()
            )
        } else {
            format!("schoolgate: {}", verdict.reason())
        };
        wire::push_opt(out, edns.dnssec_ok, 0, Some((code, &text)));
    }
    rcode
}

/// EDE "Blocked" for security and legal categories, "Filtered" for the rest.
pub fn ede_code(verdict: &Verdict) -> u16 {
    let security = match verdict.category {
        Some(c) => SECURITY.contains(&c),
        None => matches!(verdict.rule, Rule::MalformedHost),
    };
    if security {
        wire::EDE_BLOCKED
    } else {
        wire::EDE_FILTERED
    }
}
