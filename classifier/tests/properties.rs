use proptest::prelude::*;
use schoolgate_classifier::{Action, Category, Request};

use crate::support::{school, tuesday_lesson};

proptest! {
    /// Any input decides without panicking, and an illegal-listed host is blocked
    /// for every role whatever the path, query or subdomain.
    #[test]
    fn decide_never_panics_and_illegal_is_always_blocked(
        host in "\\PC{0,80}",
        sub in "[a-z0-9]{1,10}",
        path in "(/[a-zA-Z0-9%._-]{0,20}){0,4}",
        query in proptest::option::of("[a-z]=[^#]{0,30}"),
    ) {
        let p = school();
        let t = tuesday_lesson();
        for (id, _) in p.roles() {
            let _ = p.decide(&Request { role: id, host: &host, path: Some(&path), query: query.as_deref(), at: t });
            let illegal = format!("{sub}.illegal.example");
            let v = p.decide(&Request { role: id, host: &illegal, path: Some(&path), query: query.as_deref(), at: t });
            prop_assert_eq!(v.action, Action::Block);
            prop_assert_eq!(v.category, Some(Category::Illegal));
        }
    }

    /// A verdict's deciding category is always one of its matched categories.
    #[test]
    fn the_deciding_category_is_among_the_matched_ones(host in "[a-z]{1,12}\\.(com|org|example)") {
        let p = school();
        for (id, _) in p.roles() {
            let v = p.decide(&Request::host(id, &host, tuesday_lesson()));
            if let Some(c) = v.category {
                prop_assert!(v.categories.contains(c));
            }
        }
    }
}
