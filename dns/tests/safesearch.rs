use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_gets_forcesafesearch_for_pupils_not_staff() {
    let school = School::start().await;
    let d = school.dig(PUPIL, &["www.google.com", "A"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.output);
    assert_eq!(
        d.data("CNAME"),
        ["forcesafesearch.google.com."],
        "{}",
        d.output
    );
    assert_eq!(
        d.data("A"),
        ["216.239.38.120"],
        "the enforced host's own address"
    );
    assert_eq!(d.answers[0].0, "www.google.com.");
    assert_eq!(d.answers[1].0, "forcesafesearch.google.com.");

    let v6 = school.dig(PUPIL, &["www.google.com", "AAAA"]).await;
    assert_eq!(v6.data("CNAME"), ["forcesafesearch.google.com."]);
    assert_eq!(v6.data("AAAA"), ["2001:4860:4802:32::78"], "{}", v6.output);

    let staff = school.dig(STAFF, &["www.google.com", "A"]).await;
    assert!(staff.data("CNAME").is_empty(), "{}", staff.output);
    assert_eq!(staff.data("A"), ["142.250.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn youtube_restriction_follows_the_role_and_bing_is_strict() {
    let school = School::start().await;
    let pupil = school.dig(PUPIL, &["www.youtube.com", "A"]).await;
    assert_eq!(
        pupil.data("CNAME"),
        ["restrict.youtube.com."],
        "{}",
        pupil.output
    );
    assert_eq!(pupil.data("A"), ["216.239.38.120"]);
    let guest = school.dig(GUEST, &["www.youtube.com", "A"]).await;
    assert_eq!(
        guest.data("CNAME"),
        ["restrictmoderate.youtube.com."],
        "{}",
        guest.output
    );
    assert_eq!(guest.data("A"), ["216.239.38.119"]);
    let bing = school.dig(PUPIL, &["www.bing.com", "A"]).await;
    assert_eq!(bing.data("CNAME"), ["strict.bing.com."], "{}", bing.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rewritten_answer_is_cached() {
    let school = School::start().await;
    let first = school.dig(PUPIL, &["www.google.com", "A"]).await;
    assert_eq!(first.data("A"), ["216.239.38.120"]);
    let asked = school.upstream.udp_queries();
    let again = school.dig(GUEST, &["WWW.Google.COM", "A"]).await;
    assert_eq!(again.data("CNAME"), ["forcesafesearch.google.com."]);
    assert_eq!(
        again.answers[0].0, "WWW.Google.COM.",
        "the client's spelling comes back"
    );
    assert_eq!(
        school.upstream.udp_queries(),
        asked,
        "served from the cache"
    );
    assert!(school.filter.stats().rewritten >= 2);
}
