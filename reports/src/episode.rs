//! Episodes: one person's flags close together in time count as one concern.
//!
//! The alerter sends one alert per episode and the weekly summary counts
//! episodes, with the same rule, so "3 episodes" in Monday's summary matches the
//! three alerts the safeguarding lead received.

use jiff::{SignedDuration, Timestamp};
use schoolgate_classifier::Severity;
use schoolgate_events::AccessEvent;

/// Who a flag is about: the signed-in user when known, else the device's address.
/// Within one school: the same address at two schools is two devices.
pub fn subject_of(e: &AccessEvent) -> String {
    match &e.user {
        Some(u) if !u.is_empty() => format!("{}\u{1f}user:{u}", e.school),
        _ => format!("{}\u{1f}client:{}", e.school, e.client_ip),
    }
}

/// One episode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Episode {
    /// [`subject_of`] its events (never shown to anyone: it holds names).
    pub subject: String,
    pub school: String,
    /// The first event's id: the episode's link in the dashboard.
    pub first_event: String,
    pub first: Timestamp,
    pub last: Timestamp,
    pub flags: u64,
    pub max_severity: Severity,
}

/// Groups flags into episodes: a flag within `gap` of the previous flag of the
/// same subject joins its episode. Returns episodes oldest first.
pub fn group(events: &[&AccessEvent], gap: SignedDuration) -> Vec<Episode> {
    let mut sorted: Vec<(String, &AccessEvent)> =
        events.iter().map(|e| (subject_of(e), *e)).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.time.cmp(&b.1.time)));
    let mut out: Vec<Episode> = Vec::new();
    for (subject, e) in sorted {
        let severity = e.severity.unwrap_or(Severity::Low);
        match out.last_mut() {
            Some(ep) if ep.subject == subject && e.time.duration_since(ep.last) <= gap => {
                ep.last = e.time;
                ep.flags += 1;
                ep.max_severity = ep.max_severity.max(severity);
            }
            _ => out.push(Episode {
                subject,
                school: e.school.clone(),
                first_event: e.id.to_string(),
                first: e.time,
                last: e.time,
                flags: 1,
                max_severity: severity,
            }),
        }
    }
    out.sort_by(|a, b| {
        a.first
            .cmp(&b.first)
            .then(a.first_event.cmp(&b.first_event))
    });
    out
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;
    use schoolgate_events::Source;

    use super::*;

    proptest! {
        /// Model check: every flag lands in exactly one episode of its subject;
        /// within an episode no two consecutive flags are more than the gap apart;
        /// two episodes of one subject are more than the gap apart.
        #[test]
        fn episodes_partition_flags_by_subject_and_gap(
            flags in proptest::collection::vec((0u8..4, 0i64..600), 0..60),
            gap in 1i64..90,
        ) {
            let evs: Vec<AccessEvent> = flags
                .iter()
                .map(|(who, minute)| flag(Some(&format!("u{who}")), 1, *minute))
                .collect();
            let refs: Vec<&AccessEvent> = evs.iter().collect();
            let gap = SignedDuration::from_mins(gap);
            let eps = group(&refs, gap);
            prop_assert_eq!(eps.iter().map(|e| e.flags).sum::<u64>(), evs.len() as u64);
            for who in 0u8..4 {
                let subject = subject_of(&flag(Some(&format!("u{who}")), 1, 0));
                let mut times: Vec<Timestamp> = evs
                    .iter()
                    .filter(|e| subject_of(e) == subject)
                    .map(|e| e.time)
                    .collect();
                times.sort();
                // The model: a new episode starts wherever the gap is exceeded.
                let expected = times
                    .windows(2)
                    .filter(|w| w[1].duration_since(w[0]) > gap)
                    .count()
                    + usize::from(!times.is_empty());
                let mine: Vec<&Episode> = eps.iter().filter(|e| e.subject == subject).collect();
                prop_assert_eq!(mine.len(), expected);
                for pair in mine.windows(2) {
                    prop_assert!(pair[1].first.duration_since(pair[0].last) > gap);
                }
            }
        }
    }

    fn flag(user: Option<&str>, ip: u8, minute: i64) -> AccessEvent {
        let t = Timestamp::from_second(1_800_000_000 + minute * 60).expect("valid");
        let e = AccessEvent::new(
            Source::Proxy,
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, ip)),
            "x.example",
        )
        .at(t)
        .with_severity(Some(Severity::High));
        match user {
            Some(u) => e.with_user(u),
            None => e,
        }
    }

    #[test]
    fn close_flags_of_one_person_are_one_episode() {
        let evs = [
            flag(Some("a"), 1, 0),
            flag(Some("a"), 2, 10), // same user, another device: same person
            flag(Some("a"), 1, 45), // 35 minutes after the last: new episode
            flag(None, 1, 5),       // no user: the device is the subject
            flag(None, 1, 20),
        ];
        let refs: Vec<&AccessEvent> = evs.iter().collect();
        let eps = group(&refs, SignedDuration::from_mins(30));
        assert_eq!(eps.len(), 3);
        assert_eq!(eps.iter().map(|e| e.flags).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(eps[0].first_event, evs[0].id.to_string());
    }
}
