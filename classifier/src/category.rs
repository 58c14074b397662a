//! The canonical category taxonomy, category sets and flag severities.
//!
//! The taxonomy covers the UK Safer Internet Centre's filtering categories
//! (discrimination, drugs, extremism, gambling, malware/hacking, pornography,
//! piracy, self-harm, violence), its monitoring additions (bullying, child sexual
//! exploitation, suicide) and what a school's policy needs beyond them
//! (circumvention, social networking, games, ...). `Illegal` is the class fed by
//! IWF/CTIRU-style lists: no role and no override can allow it.
//!
//! Categories are a closed enum so that a set of them is one `u64` on the hot path.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! categories {
    ($( $variant:ident = $id:literal, $name:literal, $label:literal; )*) => {
        /// One category of the canonical taxonomy.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        #[non_exhaustive]
        pub enum Category {
            $( #[doc = $label] $variant = $id, )*
        }

        impl Category {
            /// Every category, in id order.
            pub const ALL: &'static [Category] = &[ $( Category::$variant, )* ];

            /// The name used in configuration files, events and the API.
            pub const fn name(self) -> &'static str {
                match self { $( Category::$variant => $name, )* }
            }

            /// A label for people (block pages, reports).
            pub const fn label(self) -> &'static str {
                match self { $( Category::$variant => $label, )* }
            }

            /// Parses a configuration name (`"self-harm"`, `"social-networking"`).
            pub fn from_name(name: &str) -> Option<Category> {
                match name { $( $name => Some(Category::$variant), )* _ => None }
            }
        }
    };
}

categories! {
    Illegal = 0, "illegal", "Illegal content (IWF / CTIRU lists)";
    Pornography = 1, "pornography", "Pornography";
    Adult = 2, "adult", "Adult and mixed adult content";
    Gambling = 3, "gambling", "Gambling";
    Drugs = 4, "drugs", "Drugs and substance abuse";
    Extremism = 5, "extremism", "Extremism and radicalisation";
    Discrimination = 6, "discrimination", "Discrimination and hate";
    Violence = 7, "violence", "Violence";
    SelfHarm = 8, "self-harm", "Self-harm";
    Suicide = 9, "suicide", "Suicide";
    Bullying = 10, "bullying", "Bullying";
    ChildExploitation = 11, "child-exploitation", "Child sexual exploitation";
    Malware = 12, "malware", "Malware";
    Phishing = 13, "phishing", "Phishing";
    Hacking = 14, "hacking", "Hacking";
    Cryptomining = 15, "cryptomining", "Cryptomining";
    Piracy = 16, "piracy", "Piracy and copyright theft";
    Proxy = 17, "proxy", "Proxies and anonymisers";
    Vpn = 18, "vpn", "VPN services";
    Doh = 19, "doh", "Encrypted DNS resolvers (DoH/DoT)";
    RemoteAccess = 20, "remote-access", "Remote access tools";
    Dating = 21, "dating", "Dating";
    SocialNetworking = 22, "social-networking", "Social networking";
    Chat = 23, "chat", "Chat and messaging";
    Games = 24, "games", "Games";
    Streaming = 25, "streaming", "Audio and video streaming";
    FileSharing = 26, "file-sharing", "File sharing and hosting";
    Advertising = 27, "advertising", "Advertising";
    Webmail = 28, "webmail", "Webmail";
    Shopping = 29, "shopping", "Shopping";
    DynamicDns = 30, "dynamic-dns", "Dynamic DNS";
    UrlShortener = 31, "url-shortener", "URL shorteners";
    Weapons = 32, "weapons", "Weapons and dangerous material";
    Cheating = 33, "cheating", "Academic cheating";
    Ai = 34, "ai", "AI chat and generation tools";
    Stalkerware = 35, "stalkerware", "Stalkerware and spyware";
    Misinformation = 36, "misinformation", "Misinformation";
    Lingerie = 37, "lingerie", "Lingerie and swimwear";
    Sports = 38, "sports", "Sports";
    News = 39, "news", "News and press";
    Search = 40, "search", "Search engines";
    Education = 41, "education", "Education";
}

impl Category {
    /// The stable numeric id (stored in events; never reused).
    pub const fn id(self) -> u8 {
        self as u8
    }

    /// The category with this id, if any.
    pub fn from_id(id: u8) -> Option<Category> {
        Category::ALL.get(usize::from(id)).copied()
    }

    /// `Illegal` can never be allowed, by any role, schedule or local allow entry.
    pub const fn is_locked(self) -> bool {
        matches!(self, Category::Illegal)
    }

    /// Circumvention of the filter: counted as a bypass attempt in reports.
    pub const fn is_bypass(self) -> bool {
        matches!(
            self,
            Category::Proxy | Category::Vpn | Category::Doh | Category::RemoteAccess
        )
    }

    /// Maps a UT1 (Université Toulouse 1 Capitole) / squidGuard category folder name
    /// to the taxonomy. `None` for UT1 categories schoolgate does not filter on
    /// (allow-lists such as `liste_blanche`, `bank`, `jobsearch`, French exam lists).
    pub fn from_ut1(name: &str) -> Option<Category> {
        use Category::*;
        Some(match name {
            "adult" | "porn" => Pornography,
            "mixed_adult" => Adult,
            "lingerie" => Lingerie,
            "gambling" => Gambling,
            "drogue" | "drugs" => Drugs,
            "agressif" | "aggressive" | "violence" => Violence,
            "dangerous_material" => Weapons,
            "malware" => Malware,
            "phishing" => Phishing,
            "hacking" | "ddos" => Hacking,
            "cryptojacking" | "bitcoin" => Cryptomining,
            "warez" => Piracy,
            "redirector"
            | "strict_redirector"
            | "strong_redirector"
            | "proxy"
            | "residential-proxies" => Proxy,
            "vpn" => Vpn,
            "doh" => Doh,
            "remote-control" => RemoteAccess,
            "dating" => Dating,
            "social_networks" => SocialNetworking,
            "chat" => Chat,
            "games" => Games,
            "audio-video" | "radio" => Streaming,
            "filehosting" => FileSharing,
            "publicite" | "ads" | "marketingware" => Advertising,
            "webmail" | "mail" => Webmail,
            "shopping" => Shopping,
            "dynamic-dns" => DynamicDns,
            "shortener" => UrlShortener,
            "tricheur" => Cheating,
            "ai" => Ai,
            "stalkerware" => Stalkerware,
            "fakenews" => Misinformation,
            "sports" => Sports,
            "press" => News,
            "educational_games" => Education,
            _ => return None,
        })
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a name that is not in the taxonomy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown category `{0}` (known: {known})", known = known_names())]
pub struct UnknownCategory(pub String);

fn known_names() -> String {
    Category::ALL
        .iter()
        .map(|c| c.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Category {
    type Err = UnknownCategory;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::from_name(s).ok_or_else(|| UnknownCategory(s.to_owned()))
    }
}

impl Serialize for Category {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Category {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The name is parsed where it lies: no string made per category read.
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = Category;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a category name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Category, E> {
                name.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Name)
    }
}

/// A set of categories, one bit per category id.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CategorySet(u64);

impl CategorySet {
    /// The empty set.
    pub const EMPTY: CategorySet = CategorySet(0);

    /// A set holding one category.
    pub const fn of(category: Category) -> CategorySet {
        CategorySet(1 << category as u8)
    }

    /// The raw bits (bit `n` is the category with id `n`).
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// A set from raw bits; bits with no category are dropped.
    pub fn from_bits(bits: u64) -> CategorySet {
        let known = (1u64 << Category::ALL.len()) - 1;
        CategorySet(bits & known)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn contains(self, category: Category) -> bool {
        self.0 & (1 << category as u8) != 0
    }

    pub fn insert(&mut self, category: Category) {
        self.0 |= 1 << category as u8;
    }

    pub fn remove(&mut self, category: Category) {
        self.0 &= !(1 << category as u8);
    }

    #[must_use]
    pub const fn union(self, other: CategorySet) -> CategorySet {
        CategorySet(self.0 | other.0)
    }

    #[must_use]
    pub const fn intersection(self, other: CategorySet) -> CategorySet {
        CategorySet(self.0 & other.0)
    }

    #[must_use]
    pub const fn difference(self, other: CategorySet) -> CategorySet {
        CategorySet(self.0 & !other.0)
    }

    pub const fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// The categories in id order.
    pub fn iter(self) -> impl Iterator<Item = Category> {
        // Walk the set bits, not the whole taxonomy: this runs several times per
        // decision. Every bit maps to a category (`from_bits` drops the rest).
        let mut bits = self.0;
        std::iter::from_fn(move || {
            while bits != 0 {
                let id = bits.trailing_zeros() as u8;
                bits &= bits - 1;
                if let Some(c) = Category::from_id(id) {
                    return Some(c);
                }
            }
            None
        })
    }

    /// The names joined with `,` (for events and CSV).
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Category::name).collect()
    }
}

impl FromIterator<Category> for CategorySet {
    fn from_iter<I: IntoIterator<Item = Category>>(iter: I) -> Self {
        let mut set = CategorySet::EMPTY;
        for c in iter {
            set.insert(c);
        }
        set
    }
}

impl fmt::Debug for CategorySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for CategorySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for c in self.iter() {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            f.write_str(c.name())?;
        }
        Ok(())
    }
}

impl Serialize for CategorySet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // The length up front: binary formats (the event journal's) need it.
        let mut seq = s.serialize_seq(Some(self.len() as usize))?;
        for category in self.iter() {
            seq.serialize_element(&category)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for CategorySet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Straight into the bits, without a list of the names first.
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = CategorySet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of category names")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<CategorySet, A::Error> {
                let mut set = CategorySet::EMPTY;
                while let Some(c) = seq.next_element::<Category>()? {
                    set.insert(c);
                }
                Ok(set)
            }
        }
        d.deserialize_seq(Names)
    }
}

/// How urgently a flagged access needs a person's attention.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Severity {
    /// Worth a look at the next review (e.g. games in lessons).
    #[default]
    Low = 1,
    /// Review soon (e.g. pornography, bypass attempts).
    Medium = 2,
    /// Same-day attention from the safeguarding lead (self-harm, suicide, extremism).
    High = 3,
    /// An attempt on an illegal list; always alerted.
    Critical = 4,
}

impl Severity {
    pub const fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn from_name(name: &str) -> Option<Severity> {
        Some(match name {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    pub fn from_u8(v: u8) -> Option<Severity> {
        Some(match v {
            1 => Severity::Low,
            2 => Severity::Medium,
            3 => Severity::High,
            4 => Severity::Critical,
            _ => return None,
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dense_and_names_round_trip() {
        for (i, c) in Category::ALL.iter().enumerate() {
            assert_eq!(usize::from(c.id()), i, "{c} has a gap before it");
            assert_eq!(Category::from_name(c.name()), Some(*c));
            assert_eq!(Category::from_id(c.id()), Some(*c));
        }
        assert!(Category::ALL.len() <= 64, "a CategorySet is one u64");
    }

    #[test]
    fn only_illegal_is_locked() {
        let locked: Vec<_> = Category::ALL.iter().filter(|c| c.is_locked()).collect();
        assert_eq!(locked, [&Category::Illegal]);
    }

    #[test]
    fn ut1_names_map_to_the_taxonomy() {
        assert_eq!(Category::from_ut1("redirector"), Some(Category::Proxy));
        assert_eq!(Category::from_ut1("vpn"), Some(Category::Vpn));
        assert_eq!(Category::from_ut1("doh"), Some(Category::Doh));
        assert_eq!(Category::from_ut1("drogue"), Some(Category::Drugs));
        assert_eq!(Category::from_ut1("agressif"), Some(Category::Violence));
        assert_eq!(Category::from_ut1("mixed_adult"), Some(Category::Adult));
        assert_eq!(Category::from_ut1("liste_blanche"), None);
    }

    #[test]
    fn unknown_name_error_lists_the_known_ones() {
        let err = "gamblin".parse::<Category>().unwrap_err().to_string();
        assert!(err.starts_with("unknown category `gamblin` (known: illegal, pornography"));
    }

    #[test]
    fn set_operations() {
        let mut s = CategorySet::of(Category::Gambling);
        s.insert(Category::Proxy);
        assert!(s.contains(Category::Gambling) && s.contains(Category::Proxy));
        assert!(!s.contains(Category::Games));
        assert_eq!(s.len(), 2);
        assert_eq!(s.to_string(), "gambling, proxy");
        let t = s.difference(CategorySet::of(Category::Proxy));
        assert_eq!(t.iter().collect::<Vec<_>>(), [Category::Gambling]);
        assert_eq!(
            CategorySet::from_bits(u64::MAX).len() as usize,
            Category::ALL.len()
        );
    }
}
