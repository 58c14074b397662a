use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use schoolgate_classifier::Category;
use schoolgate_classifier::config::{ListFormat, ListSource};
use schoolgate_lists::update::{Outcome, UpdateError, is_due, read_meta, update};

/// A real HTTP/1.1 server on 127.0.0.1 serving one body with an ETag; answers
/// 304 to a matching If-None-Match. Returns the URL and the request log.
fn serve(body: Arc<Mutex<(Vec<u8>, u16)>>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/list", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            seen.lock().unwrap().push(head.clone());
            let (bytes, status) = body.lock().unwrap().clone();
            let etag = format!("\"v{}\"", bytes.len());
            let resp = if head
                .to_ascii_lowercase()
                .contains(&format!("if-none-match: {etag}"))
            {
                format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n")
                    .into_bytes()
            } else {
                let mut r = format!(
                    "HTTP/1.1 {status} X\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    bytes.len()
                )
                .into_bytes();
                r.extend_from_slice(&bytes);
                r
            };
            let _ = stream.write_all(&resp);
        }
    });
    (url, log)
}

fn source(url: &str, format: ListFormat, category: Option<Category>) -> ListSource {
    ListSource {
        name: "remote".into(),
        format,
        path: None,
        url: Some(url.into()),
        category,
        only: Vec::new(),
        update_hours: Some(24),
    }
}

#[test]
fn downloads_then_asks_conditionally_and_refuses_an_error_page() {
    let cache = tempfile::tempdir().unwrap();
    let body = Arc::new(Mutex::new((
        b"# gambling\nbet.example\ncasino.example\n".to_vec(),
        200,
    )));
    let (url, log) = serve(body.clone());
    let src = source(&url, ListFormat::Domains, Some(Category::Gambling));
    assert!(is_due(cache.path(), &src, jiff::Timestamp::now()));

    assert_eq!(
        update(&src, cache.path()).unwrap(),
        Outcome::Updated { entries: 2 }
    );
    let copy = cache.path().join("remote.list");
    assert_eq!(
        std::fs::read_to_string(&copy).unwrap(),
        "# gambling\nbet.example\ncasino.example\n"
    );
    assert_eq!(read_meta(cache.path(), &src).unwrap().entries, 2);
    assert!(!is_due(cache.path(), &src, jiff::Timestamp::now()));

    // Second time: a conditional request, answered 304.
    assert_eq!(update(&src, cache.path()).unwrap(), Outcome::Unchanged);
    assert!(
        log.lock().unwrap()[1]
            .to_ascii_lowercase()
            .contains("if-none-match: \"v")
    );

    // A mirror returning an HTML page: refused, the old copy stays.
    *body.lock().unwrap() = (
        b"<html><body>Service unavailable</body></html>\n".to_vec(),
        200,
    );
    let err = update(&src, cache.path()).unwrap_err();
    assert!(matches!(err, UpdateError::Unsound { .. }), "{err}");
    assert!(
        err.to_string().contains("keeping the previous copy"),
        "{err}"
    );
    assert!(
        std::fs::read_to_string(&copy)
            .unwrap()
            .contains("casino.example")
    );

    // A server error: refused with the status.
    *body.lock().unwrap() = (b"x".to_vec(), 503);
    let err = update(&src, cache.path()).unwrap_err();
    assert!(err.to_string().ends_with("HTTP status 503"), "{err}");
}

#[test]
fn a_ut1_archive_is_unpacked_and_swapped_in() {
    // Build blacklists/gambling/domains and blacklists/vpn/domains as a tar.gz.
    let mut tarball = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut tarball, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (path, text) in [
            (
                "blacklists/gambling/domains",
                "bet.example\ncasino.example\n",
            ),
            ("blacklists/gambling/urls", "news.example/betting\n"),
            ("blacklists/vpn/domains", "vpn.example\n"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, path, text.as_bytes()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let (url, _) = serve(Arc::new(Mutex::new((tarball, 200))));
    let src = source(&url, ListFormat::Ut1, None);
    assert_eq!(
        update(&src, cache.path()).unwrap(),
        Outcome::Updated { entries: 4 }
    );
    let dir = cache.path().join("remote");
    assert!(dir.join("gambling/domains").is_file());
    assert!(dir.join("vpn/domains").is_file());
}
