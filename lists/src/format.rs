//! The list formats schoolgate reads, and the entries they yield.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a list file is written. Named in configuration as `format = "hosts"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Format {
    /// One host name (or IP address) per line; `#` comments.
    Domains,
    /// A hosts file: `0.0.0.0 a.example b.example`, several names per line.
    Hosts,
    /// Adblock-style rules; only whole-domain rules (`||name^`) are entries.
    Adblock,
    /// `host/path` lines as in a UT1 `urls` file; `http(s)://` is accepted and dropped.
    Urls,
    /// A UT1 / squidGuard source. Read a category folder with
    /// [`read_ut1_folder`](crate::read_ut1_folder); a single UT1 file read with this
    /// format takes both `domains` and `urls` lines (a line without a path is a domain).
    Ut1,
}

impl Format {
    /// Every format, in the order of the docs.
    pub const ALL: &'static [Format] = &[
        Format::Domains,
        Format::Hosts,
        Format::Adblock,
        Format::Urls,
        Format::Ut1,
    ];

    /// The configuration name.
    pub const fn name(self) -> &'static str {
        match self {
            Format::Domains => "domains",
            Format::Hosts => "hosts",
            Format::Adblock => "adblock",
            Format::Urls => "urls",
            Format::Ut1 => "ut1",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a format name that schoolgate does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown list format `{0}` (known: domains, hosts, adblock, urls, ut1)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .iter()
            .copied()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

/// One normalised entry, borrowed from the line (or the reader's scratch buffer)
/// for the duration of the sink call: copy what you keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Entry<'a> {
    /// A host name or IP address; covers the name and all its subdomains.
    Domain(&'a str),
    /// A host and a path prefix. `path` starts with `/` and is kept verbatim.
    Url { host: &'a str, path: &'a str },
}

impl<'a> Entry<'a> {
    /// The (normalised) host of either kind of entry.
    pub const fn host(&self) -> &'a str {
        match self {
            Entry::Domain(host) | Entry::Url { host, .. } => host,
        }
    }
}

impl fmt::Display for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Domain(host) => f.write_str(host),
            Entry::Url { host, path } => write!(f, "{host}{path}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str_and_serde() {
        for format in Format::ALL {
            assert_eq!(format.name().parse::<Format>(), Ok(*format));
            assert_eq!(deserialize(format.name()), Ok(*format));
        }
        assert!(deserialize("Hosts").is_err(), "names are lowercase only");
    }

    /// Deserializes from a bare string, as a config value would be.
    fn deserialize(name: &str) -> Result<Format, serde::de::value::Error> {
        use serde::de::IntoDeserializer;
        Format::deserialize(name.into_deserializer())
    }

    #[test]
    fn unknown_format_names_the_known_ones() {
        let err = "hostfile".parse::<Format>().expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown list format `hostfile` (known: domains, hosts, adblock, urls, ut1)"
        );
    }

    #[test]
    fn entries_display_as_they_were_listed() {
        assert_eq!(Entry::Domain("a.example").to_string(), "a.example");
        let url = Entry::Url {
            host: "a.example",
            path: "/x",
        };
        assert_eq!(url.to_string(), "a.example/x");
        assert_eq!(url.host(), "a.example");
    }
}
