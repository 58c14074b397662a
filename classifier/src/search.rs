//! Search engines: pulling the search terms out of a URL, and the providers'
//! enforced SafeSearch / YouTube restriction hosts.
//!
//! The SafeSearch hosts are the ones the providers document for networks: a
//! resolver answers the search host with a CNAME to the enforced host
//! (`forcesafesearch.google.com`, `strict.bing.com`, `safe.duckduckgo.com`,
//! `restrict.youtube.com` / `restrictmoderate.youtube.com`).

use std::borrow::Cow;

use crate::config::Restriction;
use crate::verdict::Rewrite;

/// Google's country search domains (the second-level part after `google.`).
const GOOGLE_SUFFIXES: &[&str] = &[
    "com", "co.uk", "ie", "fr", "de", "es", "it", "nl", "be", "ca", "com.au", "co.nz", "co.in",
    "co.za", "pl", "pt", "se", "no", "dk", "fi", "ch", "at", "gr", "ru", "com.br", "com.mx",
    "co.jp", "com.tr", "com.ar", "com.sg", "com.hk", "cz", "hu", "ro", "sk", "lu", "is", "co.il",
    "ae", "com.sa", "com.eg", "com.ng", "com.pk", "com.ph", "co.id", "com.my", "co.th", "com.vn",
    "com.ua", "cat",
];

/// Host names that serve YouTube to browsers and apps.
const YOUTUBE_HOSTS: &[&str] = &[
    "www.youtube.com",
    "m.youtube.com",
    "youtubei.googleapis.com",
    "youtube.googleapis.com",
    "www.youtube-nocookie.com",
];

/// Which engine a host belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Google,
    Bing,
    DuckDuckGo,
    Yahoo,
    YouTube,
    Ecosia,
    Yandex,
    Baidu,
    Brave,
    Startpage,
}

/// The engine serving `host` (normalised), if it is a search host.
pub fn engine_of(host: &str) -> Option<Engine> {
    let bare = host.strip_prefix("www.").unwrap_or(host);
    if let Some(rest) = bare.strip_prefix("google.")
        && GOOGLE_SUFFIXES.contains(&rest)
    {
        return Some(Engine::Google);
    }
    if YOUTUBE_HOSTS.contains(&host) || bare == "youtube.com" {
        return Some(Engine::YouTube);
    }
    Some(match bare {
        "bing.com" => Engine::Bing,
        "duckduckgo.com" | "html.duckduckgo.com" | "lite.duckduckgo.com" => Engine::DuckDuckGo,
        "search.yahoo.com" | "uk.search.yahoo.com" => Engine::Yahoo,
        "ecosia.org" => Engine::Ecosia,
        "yandex.com" | "yandex.ru" => Engine::Yandex,
        "baidu.com" => Engine::Baidu,
        "search.brave.com" => Engine::Brave,
        "startpage.com" => Engine::Startpage,
        _ => return None,
    })
}

/// The search terms in a URL's query, decoded (`+` and `%xx`), if `path` is the
/// search page of `engine` (from [`engine_of`]).
pub fn search_terms(engine: Engine, path: &str, query: &str) -> Option<String> {
    let param = match engine {
        Engine::Google
            if path.starts_with("/search") || path == "/" || path.starts_with("/complete") =>
        {
            "q"
        }
        Engine::Bing
            if path.starts_with("/search")
                || path.starts_with("/images")
                || path.starts_with("/videos") =>
        {
            "q"
        }
        Engine::DuckDuckGo | Engine::Ecosia | Engine::Brave | Engine::Startpage => "q",
        Engine::Yahoo if path.starts_with("/search") => "p",
        Engine::YouTube if path.starts_with("/results") => "search_query",
        Engine::Yandex => "text",
        Engine::Baidu => "wd",
        _ => return None,
    };
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == param)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The rewrite that enforces SafeSearch / YouTube restriction on `engine`'s hosts,
/// given the role's levels; `None` if the level is off.
pub fn safesearch_rewrite(
    engine: Engine,
    safesearch: Restriction,
    youtube: Restriction,
) -> Option<Rewrite> {
    let level = if engine == Engine::YouTube {
        youtube
    } else {
        safesearch
    };
    if level == Restriction::Off {
        return None;
    }
    Some(match engine {
        Engine::Google => Rewrite {
            cname: "forcesafesearch.google.com",
            param: Some(("safe", "active")),
        },
        Engine::Bing => Rewrite {
            cname: "strict.bing.com",
            param: Some(("adlt", "strict")),
        },
        Engine::DuckDuckGo => Rewrite {
            cname: "safe.duckduckgo.com",
            param: Some(("kp", "1")),
        },
        Engine::YouTube => Rewrite {
            cname: if level == Restriction::Strict {
                "restrict.youtube.com"
            } else {
                "restrictmoderate.youtube.com"
            },
            param: None,
        },
        // No DNS-level enforcement exists for these; the URL parameter does it.
        Engine::Yahoo => Rewrite {
            cname: "",
            param: Some(("vm", "r")),
        },
        Engine::Ecosia | Engine::Brave | Engine::Startpage | Engine::Yandex | Engine::Baidu => {
            return None;
        }
    })
}

/// Percent-decodes a URL path for keyword scanning (lossy on invalid UTF-8).
pub fn decode_path(path: &str) -> Cow<'_, str> {
    if crate::request::first_of(path.as_bytes(), [b'%']).is_some() {
        percent_encoding::percent_decode_str(path).decode_utf8_lossy()
    } else {
        Cow::Borrowed(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `decide()` asks: the host's engine first.
    fn search_terms(host: &str, path: &str, query: &str) -> Option<String> {
        super::search_terms(engine_of(host)?, path, query)
    }

    fn safesearch_rewrite(
        host: &str,
        safesearch: Restriction,
        youtube: Restriction,
    ) -> Option<Rewrite> {
        super::safesearch_rewrite(engine_of(host)?, safesearch, youtube)
    }

    #[test]
    fn extracts_terms_from_major_engines() {
        assert_eq!(
            search_terms("www.google.co.uk", "/search", "q=how+to+tie+a+tie&hl=en").as_deref(),
            Some("how to tie a tie")
        );
        assert_eq!(
            search_terms("www.bing.com", "/search", "q=caf%C3%A9").as_deref(),
            Some("café")
        );
        assert_eq!(
            search_terms("duckduckgo.com", "/", "q=x&t=h_").as_deref(),
            Some("x")
        );
        assert_eq!(
            search_terms("search.yahoo.com", "/search", "p=weather").as_deref(),
            Some("weather")
        );
        assert_eq!(
            search_terms("www.youtube.com", "/results", "search_query=cats").as_deref(),
            Some("cats")
        );
        assert_eq!(
            search_terms("www.ecosia.org", "/search", "q=trees").as_deref(),
            Some("trees")
        );
        assert_eq!(search_terms("www.google.com", "/maps", "q=x"), None);
        assert_eq!(search_terms("example.com", "/search", "q=x"), None);
        assert_eq!(search_terms("www.google.com", "/search", "q="), None);
    }

    #[test]
    fn safesearch_hosts_per_level() {
        use Restriction::*;
        assert_eq!(
            safesearch_rewrite("www.google.co.uk", Strict, Off).map(|r| r.cname),
            Some("forcesafesearch.google.com")
        );
        assert_eq!(safesearch_rewrite("www.google.com", Off, Strict), None);
        assert_eq!(
            safesearch_rewrite("www.youtube.com", Off, Moderate).map(|r| r.cname),
            Some("restrictmoderate.youtube.com")
        );
        assert_eq!(
            safesearch_rewrite("m.youtube.com", Off, Strict).map(|r| r.cname),
            Some("restrict.youtube.com")
        );
        assert_eq!(
            safesearch_rewrite("www.bing.com", Strict, Off).map(|r| r.cname),
            Some("strict.bing.com")
        );
        assert_eq!(
            safesearch_rewrite("duckduckgo.com", Moderate, Off).map(|r| r.cname),
            Some("safe.duckduckgo.com")
        );
        assert_eq!(safesearch_rewrite("google.evil.com", Strict, Strict), None);
    }
}
