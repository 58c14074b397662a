//! schoolgate's own default lists, written by its authors and compiled in.
//!
//! Downloaded lists (UT1 and others) are broad but lag behind and miss what a
//! school most needs from day one: the filter's own bypass routes (encrypted DNS,
//! VPNs, web proxies), UK gambling brands, and the social and chat services the
//! policies name. These short lists cover that before any download has run. They
//! are never copied from third-party lists; each file's header says so.

use schoolgate_classifier::Category;

use crate::format::{Entry, Format};
use crate::read::read_str;
use crate::report::ListReport;

/// One curated list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CuratedList {
    /// The list's name (its file is `lists/curated/<name>.txt`).
    pub name: &'static str,
    /// The category every entry of the list is filed under.
    pub category: Category,
    pub format: Format,
    pub text: &'static str,
}

impl CuratedList {
    /// Reads the list; it is checked in tests to have no malformed lines.
    pub fn read(&self, sink: &mut dyn FnMut(Entry<'_>)) -> ListReport {
        read_str(self.name, self.text, self.format, sink)
    }
}

static ALL: [CuratedList; 7] = [
    CuratedList {
        name: "doh",
        category: Category::Doh,
        format: Format::Domains,
        text: include_str!("../curated/doh.txt"),
    },
    CuratedList {
        name: "vpn",
        category: Category::Vpn,
        format: Format::Domains,
        text: include_str!("../curated/vpn.txt"),
    },
    CuratedList {
        name: "proxy",
        category: Category::Proxy,
        format: Format::Domains,
        text: include_str!("../curated/proxy.txt"),
    },
    CuratedList {
        name: "gambling",
        category: Category::Gambling,
        format: Format::Domains,
        text: include_str!("../curated/gambling.txt"),
    },
    CuratedList {
        name: "social-networking",
        category: Category::SocialNetworking,
        format: Format::Domains,
        text: include_str!("../curated/social-networking.txt"),
    },
    CuratedList {
        name: "chat",
        category: Category::Chat,
        format: Format::Domains,
        text: include_str!("../curated/chat.txt"),
    },
    // Names the DNS filter must answer specially (NXDOMAIN, not a block page) so
    // that browsers and phones turn their own encrypted DNS off and stay filtered.
    CuratedList {
        name: "bypass-canaries",
        category: Category::Doh,
        format: Format::Domains,
        text: include_str!("../curated/bypass-canaries.txt"),
    },
];

/// Every curated list.
pub fn all() -> &'static [CuratedList] {
    &ALL
}

/// The curated list with this name.
pub fn find(name: &str) -> Option<&'static CuratedList> {
    ALL.iter().find(|list| list.name == name)
}
