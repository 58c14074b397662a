use crate::support::*;
use schoolgate_classifier::Action;

#[tokio::test]
async fn download_over_the_cap_by_content_length_gets_a_page() {
    let h = Harness::start().await;
    // Pupils may download 1 MiB.
    let r = h.curl_via(PUPIL, &[&h.allowed("/big?n=900000")]).await;
    assert_eq!(r.code, 200);
    assert_eq!(r.body.len(), 900_000);
    let r = h.curl_via(PUPIL, &[&h.allowed("/big?n=2000000")]).await;
    assert_eq!(r.code, 403, "{r:?}");
    assert!(r.body.contains("Download too large"), "{}", r.body);
    let e = h.event(PUPIL, |e| e.path == "/big?n=2000000").await;
    assert_eq!(e.action, Action::Block);
    assert_eq!(e.rule, "download limit");
    // Staff have no cap.
    let r = h.curl_via(STAFF, &[&h.allowed("/big?n=2000000")]).await;
    assert_eq!(r.code, 200);
    assert_eq!(r.body.len(), 2_000_000);
    h.stop().await;
}

#[tokio::test]
async fn streamed_download_over_the_cap_is_cut_and_logged() {
    let h = Harness::start().await;
    let r = h.curl_via(PUPIL, &[&h.allowed("/chunked?n=3000000")]).await;
    assert_ne!(r.exit, 0, "the transfer is cut: {r:?}");
    assert!(r.body.len() < 3_000_000);
    let e = h.event(PUPIL, |e| e.path == "/chunked?n=3000000").await;
    assert_eq!(e.action, Action::Block);
    assert_eq!(e.rule, "download limit");
    assert!(
        e.bytes_down > 1024 * 1024 && e.bytes_down < 3_000_000,
        "{e:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn upload_over_the_cap_is_refused() {
    let h = Harness::start().await;
    let file = h.dir.path().join("big.bin");
    std::fs::write(&file, vec![b'u'; 2 * 1024 * 1024]).expect("write");
    let data = format!("@{}", file.display());
    // With a Content-Length: refused before a byte is read.
    let r = h
        .curl_via(PUPIL, &["--data-binary", &data, &h.allowed("/up1")])
        .await;
    assert_eq!(r.code, 413, "{r:?}");
    assert!(r.body.contains("Upload too large"));
    // Chunked (no length): counted as it streams.
    let r = h
        .curl_via(
            PUPIL,
            &[
                "-H",
                "Transfer-Encoding: chunked",
                "--data-binary",
                &data,
                &h.allowed("/up2"),
            ],
        )
        .await;
    assert_eq!(r.code, 413, "{r:?}");
    let e = h.event(PUPIL, |e| e.path == "/up2").await;
    assert_eq!(e.rule, "upload limit");
    assert_eq!(e.action, Action::Block);
    // Staff may upload it.
    let r = h
        .curl_via(STAFF, &["--data-binary", &data, &h.allowed("/up3")])
        .await;
    assert_eq!(r.code, 200, "{r:?}");
    assert!(r.body.contains("body-bytes: 2097152"));
    h.stop().await;
}
