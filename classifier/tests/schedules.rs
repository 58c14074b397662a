use schoolgate_classifier::Action;

use crate::support::{at, decide, school};

#[test]
fn staff_social_networking_only_at_lunch_and_after_school_on_school_days() {
    let p = school();
    let fb = |t: &str| decide(p, "staff", "https://www.facebook.com/", at(t)).action;
    // Tuesday 24 November 2026, in term.
    assert_eq!(fb("2026-11-24T10:00:00"), Action::Block, "lesson time");
    assert_eq!(fb("2026-11-24T12:15:00"), Action::Allow, "lunch starts");
    assert_eq!(fb("2026-11-24T13:04:59"), Action::Allow, "lunch");
    assert_eq!(fb("2026-11-24T13:05:00"), Action::Block, "lunch ended");
    assert_eq!(fb("2026-11-24T16:30:00"), Action::Allow, "after school");
    // Half term (a closure) and the weekend are not school days: the schedules do
    // not apply, so the block stands.
    assert_eq!(fb("2026-10-27T12:30:00"), Action::Block, "half term");
    assert_eq!(fb("2026-11-28T12:30:00"), Action::Block, "Saturday");
    // After the end of term.
    assert_eq!(fb("2026-12-22T12:30:00"), Action::Block, "holiday");
    // Pupils never.
    assert_eq!(
        decide(
            p,
            "pupil",
            "https://www.facebook.com/",
            at("2026-11-24T12:30:00")
        )
        .action,
        Action::Block
    );
}

#[test]
fn schedules_use_school_time_across_the_clock_change() {
    let p = school();
    // 12:30 BST on 2 October is 11:30 UTC: still lunch in school time.
    let t: jiff::Timestamp = "2026-10-02T11:30:00Z".parse().unwrap();
    assert_eq!(decide(p, "staff", "facebook.com", t).action, Action::Allow);
    // 12:30 UTC on 24 November is 12:30 GMT.
    let t: jiff::Timestamp = "2026-11-24T12:30:00Z".parse().unwrap();
    assert_eq!(decide(p, "staff", "facebook.com", t).action, Action::Allow);
    let t: jiff::Timestamp = "2026-11-24T11:30:00Z".parse().unwrap();
    assert_eq!(decide(p, "staff", "facebook.com", t).action, Action::Block);
}
