//! Weighted keyword rules, scanned with Aho-Corasick over the host and path (to
//! catch sites no list knows yet) and over search terms (to flag safeguarding
//! searches).
//!
//! # Rules text
//! One rule a line, `#` comments:
//! ```text
//! url    pornography 10 porn        # substring of host/path
//! url    gambling     5 ^bet        # `^`: must start a token (after . - / _ or digits)
//! search suicide     10 kill myself # search scope: whole words only
//! search self-harm   10 self harm*  # `*`: the last word may continue (harming)
//! neutral essex                     # absorbs the words inside it (Scunthorpe problem)
//! ```
//! A category matches when the weights of its matched rules add up to
//! [`THRESHOLD`]: a weight of 10 decides alone, two weaker hints decide together.
//!
//! # Why neutral words work
//! The automaton uses leftmost-longest, non-overlapping matching: in `essex` the
//! neutral `essex` starts before `sex` and wins the span, so `sex` is never seen;
//! in `analysis` the neutral is longer than `anal` at the same start. Text is
//! scanned twice when it holds digits or symbols: as written, and with leetspeak
//! undone (`p0rn` → `porn`), so `bet365` still matches `bet365`.
//!
//! # The URL scan
//! The URL scope runs on every request, so its DFA (built by `aho-corasick`) is
//! copied once into a table laid out for the scan loop ([`UrlDfa`]), which runs
//! the same leftmost-longest search as [`AhoCorasick::find_iter`] (search from a
//! position, keep the last match state seen until the dead state, resume after
//! the match), reading ASCII upper case as lower case on the way so that a path
//! is never copied to be lowercased. Each byte's step waits on the one before
//! (a table load), so the host and the path are walked together, two
//! independent chains the core overlaps.

use std::collections::{HashMap, HashSet};

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Anchored, MatchKind};

use crate::category::{Category, CategorySet};

/// The score at which a category matches.
pub const THRESHOLD: u16 = 10;

/// The built-in rules, written by schoolgate's authors.
pub const BUILTIN: &str = include_str!("../rules/keywords.txt");

/// A problem in a rules text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name}:{line}: {message}")]
pub struct RuleError {
    pub name: String,
    pub line: usize,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Url,
    Search,
}

#[derive(Clone, Debug)]
struct Pattern {
    text: Box<str>,
    /// `None` for a neutral word.
    category: Option<Category>,
    weight: u16,
    /// Must start at a token boundary.
    start_bound: bool,
    /// Must end at a token boundary (search scope, unless the rule ends in `*`).
    end_bound: bool,
}

/// One compiled scope's automaton and patterns.
#[derive(Clone, Debug)]
struct Matcher {
    automaton: Scan,
    patterns: Vec<Pattern>,
}

/// How a scope finds its matches.
#[derive(Clone, Debug)]
enum Scan {
    /// URL scope: leftmost-longest.
    Leftmost(Box<UrlDfa>),
    /// Search scope: every overlapping match.
    Overlapping(AhoCorasick),
}

/// A keyword hit that decided a category.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeywordHit {
    pub category: Category,
    pub keyword: Box<str>,
}

/// What a scan found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeywordMatches {
    pub categories: CategorySet,
    /// The strongest keyword of each matched category, in category order.
    pub hits: Vec<KeywordHit>,
}

/// The compiled keyword rules of both scopes.
#[derive(Clone, Debug)]
pub struct KeywordRules {
    url: Option<Matcher>,
    search: Option<Matcher>,
    count: usize,
}

impl KeywordRules {
    /// No rules: scans find nothing.
    pub fn empty() -> KeywordRules {
        KeywordRules {
            url: None,
            search: None,
            count: 0,
        }
    }

    /// The built-in rules.
    pub fn builtin() -> KeywordRules {
        // The built-in text is tested to parse; an error here is a build defect.
        KeywordRules::parse("builtin keywords", BUILTIN).unwrap_or_else(|_| KeywordRules::empty())
    }

    /// Number of rules (neutral words included).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Parses a rules text (see the module docs for the syntax).
    pub fn parse(name: &str, text: &str) -> Result<KeywordRules, RuleError> {
        let mut url = Vec::new();
        let mut search = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let err = |message: String| RuleError {
                name: name.to_owned(),
                line: i + 1,
                message,
            };
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let scope = words.next().unwrap_or("");
            if scope == "neutral" {
                let word: Vec<&str> = words.collect();
                if word.is_empty() {
                    return Err(err("`neutral` needs a word".into()));
                }
                let text = word.join(" ").to_ascii_lowercase();
                let pat = |end_bound| Pattern {
                    text: text.clone().into(),
                    category: None,
                    weight: 0,
                    start_bound: false,
                    end_bound,
                };
                url.push(pat(false));
                search.push(pat(false));
                continue;
            }
            let scope = match scope {
                "url" => Scope::Url,
                "search" => Scope::Search,
                other => {
                    return Err(err(format!(
                        "`{other}`: a rule starts with url, search or neutral"
                    )));
                }
            };
            let category = words.next().ok_or_else(|| err("missing category".into()))?;
            let category = Category::from_name(category)
                .ok_or_else(|| err(format!("unknown category `{category}`")))?;
            let weight = words.next().ok_or_else(|| err("missing weight".into()))?;
            let weight: u16 = weight
                .parse()
                .ok()
                .filter(|w| (1..=100).contains(w))
                .ok_or_else(|| err(format!("`{weight}`: the weight is a number from 1 to 100")))?;
            let rest: Vec<&str> = words.collect();
            if rest.is_empty() {
                return Err(err("missing keyword".into()));
            }
            let mut text = rest.join(" ").to_ascii_lowercase();
            let start_bound = match text.strip_prefix('^') {
                Some(t) => {
                    text = t.to_owned();
                    true
                }
                None => scope == Scope::Search,
            };
            let end_bound = match text.strip_suffix('*') {
                Some(t) => {
                    text = t.to_owned();
                    false
                }
                None => scope == Scope::Search,
            };
            if text.is_empty() || !text.is_ascii() {
                return Err(err("a keyword is ASCII text".into()));
            }
            let p = Pattern {
                text: text.into(),
                category: Some(category),
                weight,
                start_bound,
                end_bound,
            };
            match scope {
                Scope::Url => url.push(p),
                Scope::Search => search.push(p),
            }
        }
        let count = url.iter().filter(|p| p.category.is_some()).count() + search.len();
        // URL scope: leftmost-longest, so neutral words win the span they cover.
        // Search scope: every overlapping phrase counts ("how to kill myself" is
        // both "how to kill" and "kill myself"); whole-word matching there already
        // keeps "skill" from matching "kill".
        let build =
            |patterns: Vec<Pattern>, overlapping: bool| -> Result<Option<Matcher>, RuleError> {
                if patterns.iter().all(|p| p.category.is_none()) {
                    return Ok(None);
                }
                let err = |e: &dyn std::fmt::Display| RuleError {
                    name: name.to_owned(),
                    line: 0,
                    message: e.to_string(),
                };
                // A DFA: a few MB for the built-in rules, and the fastest scan
                // on the hot path.
                let texts = patterns.iter().map(|p| p.text.as_bytes());
                let automaton = if overlapping {
                    Scan::Overlapping(
                        AhoCorasickBuilder::new()
                            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                            .match_kind(MatchKind::Standard)
                            .build(texts)
                            .map_err(|e| err(&e))?,
                    )
                } else {
                    // No prefilter: it only speeds up long texts, and the walk in
                    // `scan_leftmost` does not use one.
                    let dfa = DFA::builder()
                        .match_kind(MatchKind::LeftmostLongest)
                        .prefilter(false)
                        .build(texts)
                        .map_err(|e| err(&e))?;
                    Scan::Leftmost(Box::new(UrlDfa::new(&dfa).map_err(|e| err(&e))?))
                };
                Ok(Some(Matcher {
                    automaton,
                    patterns,
                }))
            };
        Ok(KeywordRules {
            url: build(url, false)?,
            search: build(search, true)?,
            count,
        })
    }

    /// Scans a host and path (any case: ASCII upper case reads as lower case).
    pub fn scan_url(&self, host: &str, path: &str) -> KeywordMatches {
        let mut acc = Accumulator::default();
        if let Some(m) = &self.url {
            m.scan_pair(host.as_bytes(), path.as_bytes(), &mut acc);
        }
        acc.finish(self.url.as_ref())
    }

    /// Scans search terms (any case).
    pub fn scan_search(&self, terms: &str) -> KeywordMatches {
        let mut acc = Accumulator::default();
        if let Some(m) = &self.search {
            scan_lowered(m, terms, &mut acc);
        }
        acc.finish(self.search.as_ref())
    }
}

fn scan_lowered(m: &Matcher, text: &str, acc: &mut Accumulator) {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        m.scan(text.to_ascii_lowercase().as_bytes(), acc);
    } else {
        m.scan(text.as_bytes(), acc);
    }
}

/// Per-category scores and the strongest pattern of each; `touched` marks the
/// categories with any score so that finishing does not walk all of them. A scan
/// scores a handful of categories at most, so they live in a short list (kept
/// off the heap) rather than in tables of 64 that would be cleared every time.
#[derive(Default)]
struct Accumulator {
    touched: u64,
    scores: smallvec::SmallVec<[Score; 4]>,
}

/// One category's score in a scan.
#[derive(Clone, Copy)]
struct Score {
    category: u8,
    total: u16,
    /// The weight and index of the strongest pattern.
    best: (u16, u32),
}

/// The indexes of the set bits, lowest first.
struct BitIter(u64);

impl Iterator for BitIter {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let i = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(i)
    }
}

impl Accumulator {
    fn add(&mut self, category: Category, weight: u16, pattern: u32) {
        let id = category.id();
        self.touched |= 1 << id;
        match self.scores.iter_mut().find(|s| s.category == id) {
            Some(s) => {
                s.total = s.total.saturating_add(weight);
                if weight > s.best.0 {
                    s.best = (weight, pattern);
                }
            }
            None => self.scores.push(Score {
                category: id,
                total: weight,
                best: (weight, pattern),
            }),
        }
    }

    /// The score of the category with id `i`, if it has one.
    fn score(&self, i: usize) -> Option<&Score> {
        self.scores.iter().find(|s| usize::from(s.category) == i)
    }

    fn total(&self, i: usize) -> u16 {
        self.score(i).map_or(0, |s| s.total)
    }

    fn finish(&self, m: Option<&Matcher>) -> KeywordMatches {
        let mut out = KeywordMatches::default();
        let Some(m) = m else { return out };
        for i in BitIter(self.touched) {
            if let Some(s) = self.score(i)
                && s.total >= THRESHOLD
                && let Some(c) = Category::from_id(i as u8)
            {
                let p = s.best.1;
                out.categories.insert(c);
                out.hits.push(KeywordHit {
                    category: c,
                    keyword: m.patterns[p as usize].text.clone(),
                });
            }
        }
        out
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphabetic()
}

/// Leetspeak undone: digits and symbols that stand for letters.
fn unleet(b: u8) -> u8 {
    match b {
        b'0' => b'o',
        b'1' | b'!' => b'i',
        b'3' => b'e',
        b'4' | b'@' => b'a',
        b'5' | b'$' => b's',
        b'7' => b't',
        other => other,
    }
}

/// Per byte: bit 0 a letter, bit 1 a leetspeak character ([`unleet`] changes
/// it), and the same two swapped in bits 3 and 2, so that `kind[b] & kind[a] >> 2`
/// is non-zero exactly when one of the neighbours `a b` is a letter and the other
/// a leetspeak character.
const LEET_KIND: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let letter = c.is_ascii_alphabetic() as u8;
        let leet = matches!(
            c,
            b'0' | b'1' | b'!' | b'3' | b'4' | b'@' | b'5' | b'$' | b'7'
        ) as u8;
        t[b] = letter | leet << 1 | leet << 2 | letter << 3;
        b += 1;
    }
    t
};

/// Whether some leetspeak character stands beside a letter (one branch-free
/// pass; most hosts and paths have none, and then need no second scan).
fn has_leet_in_word(text: &[u8]) -> bool {
    let mut prev = 0u8;
    let mut found = 0u8;
    for &b in text {
        let kind = LEET_KIND[usize::from(b)];
        found |= kind & prev >> 2;
        prev = kind;
    }
    found != 0
}

impl Matcher {
    fn scan(&self, text: &[u8], acc: &mut Accumulator) {
        self.scan_once(text, acc);
        self.scan_unleet(text, acc);
    }

    /// [`Matcher::scan`] of `a`, then of `b` unless it is empty (a host and a
    /// path), with the two first passes walked together (see
    /// [`UrlDfa::find_each2`]); `b`'s matches are counted after `a`'s second
    /// pass, as one scan after the other would.
    fn scan_pair(&self, a: &[u8], b: &[u8], acc: &mut Accumulator) {
        let Scan::Leftmost(dfa) = &self.automaton else {
            self.scan(a, acc);
            if !b.is_empty() {
                self.scan(b, acc);
            }
            return;
        };
        if b.is_empty() {
            return self.scan(a, acc);
        }
        let mut later: smallvec::SmallVec<[(u32, usize, usize); 4]> = smallvec::SmallVec::new();
        dfa.find_each2(
            a,
            b,
            |pattern, start, end| self.count(a, pattern, start, end, acc),
            |pattern, start, end| later.push((pattern, start, end)),
        );
        self.scan_unleet(a, acc);
        for (pattern, start, end) in later {
            self.count(b, pattern, start, end, acc);
        }
        self.scan_unleet(b, acc);
    }

    /// The second pass of [`Matcher::scan`], if the text needs one.
    fn scan_unleet(&self, text: &[u8], acc: &mut Accumulator) {
        // Undo leetspeak only inside words: `p0rn` → `porn`, but a pure number
        // stays a number so `bet365` and `1xbet` are still themselves. Most hosts
        // and paths have no such character: find out without allocating.
        if !has_leet_in_word(text) {
            return;
        }
        let leet_at = |i: usize| {
            unleet(text[i]) != text[i]
                && ((i > 0 && text[i - 1].is_ascii_alphabetic())
                    || text.get(i + 1).is_some_and(u8::is_ascii_alphabetic))
        };
        let Some(first) = text
            .iter()
            .enumerate()
            .filter(|&(_, &b)| unleet(b) != b)
            .map(|(i, _)| i)
            .find(|&i| leet_at(i))
        else {
            return;
        };
        let mut buf = text.to_vec();
        for (i, b) in buf.iter_mut().enumerate().skip(first) {
            if leet_at(i) {
                *b = unleet(*b);
            }
        }
        let mut extra = Accumulator::default();
        self.scan_once(&buf, &mut extra);
        // Count a category from the second pass only if the first missed it, so
        // `casino` written plainly is not counted twice.
        for i in BitIter(extra.touched) {
            if acc.total(i) < THRESHOLD
                && let Some(c) = Category::from_id(i as u8)
                && let Some(s) = extra.score(i)
            {
                acc.add(c, s.total, s.best.1);
            }
        }
    }

    fn scan_once(&self, text: &[u8], acc: &mut Accumulator) {
        match &self.automaton {
            Scan::Leftmost(dfa) => {
                dfa.find_each(text, |pattern, start, end| {
                    self.count(text, pattern, start, end, acc)
                });
            }
            Scan::Overlapping(ac) => {
                for m in ac.find_overlapping_iter(text) {
                    self.count(text, m.pattern().as_u32(), m.start(), m.end(), acc);
                }
            }
        }
    }

    fn count(&self, text: &[u8], pattern: u32, start: usize, end: usize, acc: &mut Accumulator) {
        let p = &self.patterns[pattern as usize];
        let Some(category) = p.category else { return };
        if p.start_bound && start > 0 && is_word_byte(text[start - 1]) {
            return;
        }
        if p.end_bound && text.get(end).is_some_and(|&b| is_word_byte(b)) {
            return;
        }
        acc.add(category, p.weight, pattern);
    }
}

/// A leftmost-longest DFA as one flat table: state ids are premultiplied row
/// offsets, the dead state is 0 and the match states come right after it, so one
/// comparison per byte tells whether anything special happened.
#[derive(Clone, Debug)]
struct UrlDfa {
    /// Byte to column; an ASCII upper-case letter maps to its lower case's.
    classes: [u8; 256],
    /// Row-major transitions, `stride` columns a row.
    trans: Vec<u32>,
    start: u32,
    /// The highest match state; every state up to it is dead (0) or a match.
    max_match: u32,
    /// Per match state (in order): the pattern and its length.
    matches: Vec<(u32, u32)>,
    stride: u32,
}

impl UrlDfa {
    /// Copies every state reachable from the unanchored start state.
    fn new(dfa: &DFA) -> Result<UrlDfa, aho_corasick::MatchError> {
        let start = dfa.start_state(Anchored::No)?;
        // Reachable states, found breadth first.
        let mut seen: HashSet<StateID> = HashSet::from([start]);
        let mut states = vec![start];
        let mut i = 0;
        while i < states.len() {
            for b in 0..=255u8 {
                let next = dfa.next_state(Anchored::No, states[i], b);
                if seen.insert(next) {
                    states.push(next);
                }
            }
            i += 1;
        }
        // Rows: 0 for the dead state (every transition stays there), then the
        // match states, then the rest.
        let mut row: HashMap<StateID, u32> = HashMap::new();
        let mut order: Vec<StateID> = Vec::with_capacity(states.len());
        let live = |s: &&StateID| !dfa.is_dead(**s);
        for s in states.iter().filter(live).filter(|s| dfa.is_match(**s)) {
            order.push(*s);
            row.insert(*s, order.len() as u32);
        }
        let max_match = order.len();
        for s in states.iter().filter(live).filter(|s| !dfa.is_match(**s)) {
            order.push(*s);
            row.insert(*s, order.len() as u32);
        }
        for s in states.iter().filter(|s| dfa.is_dead(**s)) {
            row.insert(*s, 0);
        }
        // Columns: bytes whose transitions agree from every state share one.
        let mut columns: HashMap<Vec<u32>, u8> = HashMap::new();
        let mut column_of: Vec<Vec<u32>> = Vec::new();
        let mut classes = [0u8; 256];
        for b in 0..=255u8 {
            let lower = b.to_ascii_lowercase();
            let column: Vec<u32> = std::iter::once(0)
                .chain(
                    order
                        .iter()
                        .map(|s| row[&dfa.next_state(Anchored::No, *s, lower)]),
                )
                .collect();
            let n = column_of.len() as u8;
            classes[usize::from(b)] = *columns.entry(column.clone()).or_insert_with(|| {
                column_of.push(column);
                n
            });
        }
        let stride = column_of.len() as u32;
        let mut trans = vec![0u32; (order.len() + 1) * column_of.len()];
        for (c, column) in column_of.iter().enumerate() {
            for (r, next) in column.iter().enumerate() {
                trans[r * column_of.len() + c] = next * stride;
            }
        }
        let matches = order[..max_match]
            .iter()
            .map(|s| {
                let p = dfa.match_pattern(*s, 0);
                (p.as_u32(), dfa.pattern_len(p) as u32)
            })
            .collect();
        Ok(UrlDfa {
            classes,
            trans,
            start: row[&start] * stride,
            max_match: max_match as u32 * stride,
            matches,
            stride,
        })
    }

    /// Calls `f(pattern, start, end)` for each leftmost-longest, non-overlapping
    /// match, as `AhoCorasick::find_iter` reports them.
    fn find_each(&self, text: &[u8], mut f: impl FnMut(u32, usize, usize)) {
        let mut lane = Lane::new(text, self.start);
        self.run(&mut lane, &mut f);
    }

    /// [`UrlDfa::find_each`] over two texts at once: each byte's transition
    /// waits for the one before it, so a single text keeps the core waiting on
    /// the table; two independent walks interleaved take little longer than one.
    /// `fa` sees `a`'s matches in order, `fb` sees `b`'s.
    fn find_each2(
        &self,
        a: &[u8],
        b: &[u8],
        mut fa: impl FnMut(u32, usize, usize),
        mut fb: impl FnMut(u32, usize, usize),
    ) {
        let (mut la, mut lb) = (Lane::new(a, self.start), Lane::new(b, self.start));
        loop {
            // The walks in locals, so the loop keeps them in registers.
            let (mut sa, mut sb, mut ia, mut ib) = (la.sid, lb.sid, la.i, lb.i);
            while let (Some(&x), Some(&y)) = (a.get(ia), b.get(ib)) {
                sa = self.next(sa, x);
                sb = self.next(sb, y);
                ia += 1;
                ib += 1;
                if sa <= self.max_match || sb <= self.max_match {
                    break;
                }
            }
            (la.sid, lb.sid, la.i, lb.i) = (sa, sb, ia, ib);
            let a_live = self.after_walk(&mut la, &mut fa);
            let b_live = self.after_walk(&mut lb, &mut fb);
            match (a_live, b_live) {
                (true, true) => {}
                (true, false) => return self.run(&mut la, &mut fa),
                (false, true) => return self.run(&mut lb, &mut fb),
                (false, false) => return,
            }
        }
    }

    /// Handles whatever stopped a lane's walk, if anything did: a match state, the
    /// dead state, the end of its text. False once the lane is done. Seeing the
    /// same match state again (the other lane stopped the walk) changes nothing.
    fn after_walk(&self, lane: &mut Lane<'_>, f: &mut impl FnMut(u32, usize, usize)) -> bool {
        if lane.sid <= self.max_match && !self.on_special(lane, f) {
            return false;
        }
        lane.i < lane.text.len() || self.on_end(lane, f)
    }

    /// The state after `sid` on byte `b`.
    #[inline(always)]
    fn next(&self, sid: u32, b: u8) -> u32 {
        self.trans[(sid + u32::from(self.classes[usize::from(b)])) as usize]
    }

    /// Runs one search to the end of its text.
    fn run(&self, lane: &mut Lane<'_>, f: &mut impl FnMut(u32, usize, usize)) {
        loop {
            // The walk in locals, so the loop keeps it in registers.
            let (mut sid, mut i) = (lane.sid, lane.i);
            let mut special = false;
            while let Some(&b) = lane.text.get(i) {
                sid = self.next(sid, b);
                i += 1;
                if sid <= self.max_match {
                    special = true;
                    break;
                }
            }
            (lane.sid, lane.i) = (sid, i);
            let live = if special {
                self.on_special(lane, f)
            } else {
                self.on_end(lane, f)
            };
            if !live {
                return;
            }
        }
    }

    /// A lane entered a match state or the dead state; false once it is done.
    #[inline(always)]
    fn on_special(&self, lane: &mut Lane<'_>, f: &mut impl FnMut(u32, usize, usize)) -> bool {
        if lane.sid == 0 {
            return self.on_end(lane, f);
        }
        (lane.matched, lane.end) = (lane.sid, lane.i);
        true
    }

    /// A lane's search ended (the dead state or the end of its text): reports the
    /// last match and searches again right after it; false when there was none,
    /// or it ended the text.
    fn on_end(&self, lane: &mut Lane<'_>, f: &mut impl FnMut(u32, usize, usize)) -> bool {
        if lane.matched == 0 {
            return false;
        }
        let (pattern, len) = self.matches[(lane.matched / self.stride) as usize - 1];
        f(pattern, lane.end - len as usize, lane.end);
        // Patterns are never empty, so the search always moves on.
        (lane.i, lane.sid, lane.matched) = (lane.end, self.start, 0);
        lane.i < lane.text.len()
    }
}

/// One text's search in progress: `find_each`'s loop state.
struct Lane<'t> {
    text: &'t [u8],
    /// The next byte to read.
    i: usize,
    sid: u32,
    /// The last match state seen in this search (0: none yet), and where it ended.
    matched: u32,
    end: usize,
}

impl<'t> Lane<'t> {
    fn new(text: &'t [u8], start: u32) -> Lane<'t> {
        Lane {
            text,
            i: 0,
            sid: start,
            matched: 0,
            end: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> KeywordRules {
        KeywordRules::parse(
            "test",
            "url pornography 10 porn\n\
             url pornography 10 sex\n\
             url gambling 10 casino\n\
             url gambling 5 ^bet\n\
             url gambling 5 poker\n\
             neutral essex\n\
             neutral sussex\n\
             neutral alphabet\n\
             search suicide 10 kill myself\n\
             search self-harm 10 self harm*\n",
        )
        .unwrap()
    }

    #[test]
    fn substring_and_threshold() {
        let r = rules();
        assert_eq!(
            r.scan_url("freeporntube.example", "").categories,
            CategorySet::of(Category::Pornography)
        );
        // One weak hint is not enough; two are.
        assert!(r.scan_url("betfair.example", "").categories.is_empty());
        assert_eq!(
            r.scan_url("betpoker.example", "").categories,
            CategorySet::of(Category::Gambling)
        );
    }

    #[test]
    fn neutral_words_absorb_contained_keywords() {
        let r = rules();
        assert!(r.scan_url("essex.ac.uk", "").categories.is_empty());
        assert!(r.scan_url("www.sussex.gov.uk", "").categories.is_empty());
        assert!(r.scan_url("alphabetpoker.com", "").categories.is_empty());
        // ...but a keyword after the neutral word still counts.
        assert!(!r.scan_url("essexsex.example", "").categories.is_empty());
    }

    #[test]
    fn leetspeak_is_undone_inside_words_only() {
        let r = rules();
        assert!(!r.scan_url("p0rn.example", "").categories.is_empty());
        assert!(!r.scan_url("c4sino.example", "").categories.is_empty());
    }

    /// Texts made of the built-in URL keywords (and neutral words), upper case
    /// and leetspeak here and there, and filler between them.
    fn keyword_texts() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let words: Vec<String> = match &BUILTIN_RULES.url {
            Some(m) => m.patterns.iter().map(|p| p.text.to_string()).collect(),
            None => Vec::new(),
        };
        let piece = prop_oneof![
            proptest::sample::select(words),
            "[a-zA-Z0-9./!@$-]{0,4}",
            "[A-Z]{1,4}",
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|p| p.concat().into_bytes())
    }

    /// Built once: the proptests below would otherwise compile them per case.
    static BUILTIN_RULES: std::sync::LazyLock<KeywordRules> =
        std::sync::LazyLock::new(KeywordRules::builtin);

    /// `aho-corasick`'s own leftmost-longest search over the URL keywords.
    static URL_REFERENCE: std::sync::LazyLock<AhoCorasick> = std::sync::LazyLock::new(|| {
        let texts: Vec<&str> = BUILTIN_RULES.url.as_ref().map_or(Vec::new(), |m| {
            m.patterns.iter().map(|p| &*p.text).collect()
        });
        AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(texts)
            .unwrap()
    });

    fn url_dfa(r: &KeywordRules) -> &UrlDfa {
        match r.url.as_ref().map(|m| &m.automaton) {
            Some(Scan::Leftmost(dfa)) => dfa,
            _ => panic!("the built-in rules have a URL scope"),
        }
    }

    proptest::proptest! {
        /// The table walk finds what `aho-corasick` finds, and two texts walked
        /// together give each text's matches as walked alone.
        #[test]
        fn url_walks_match_aho_corasick(a in keyword_texts(), b in keyword_texts()) {
            let r = &*BUILTIN_RULES;
            let dfa = url_dfa(r);
            let reference = &*URL_REFERENCE;
            let alone = |t: &[u8]| {
                let mut found = Vec::new();
                dfa.find_each(t, |p, s, e| found.push((p, s, e)));
                found
            };
            for t in [&a, &b] {
                let lower = t.to_ascii_lowercase();
                let expected: Vec<(u32, usize, usize)> = reference
                    .find_iter(&lower)
                    .map(|m| (m.pattern().as_u32(), m.start(), m.end()))
                    .collect();
                proptest::prop_assert_eq!(alone(t), expected);
            }
            let (mut in_a, mut in_b) = (Vec::new(), Vec::new());
            dfa.find_each2(&a, &b, |p, s, e| in_a.push((p, s, e)), |p, s, e| in_b.push((p, s, e)));
            proptest::prop_assert_eq!(in_a, alone(&a));
            proptest::prop_assert_eq!(in_b, alone(&b));
            // And a host and path scanned together score as one after the other.
            let mut one_by_one = Accumulator::default();
            let m = r.url.as_ref().unwrap();
            m.scan(&a, &mut one_by_one);
            if !b.is_empty() {
                m.scan(&b, &mut one_by_one);
            }
            let mut paired = Accumulator::default();
            m.scan_pair(&a, &b, &mut paired);
            proptest::prop_assert_eq!(paired.finish(Some(m)), one_by_one.finish(Some(m)));
        }
    }

    #[test]
    fn leet_kinds_match_unleet() {
        for b in 0..=255u8 {
            let kind = LEET_KIND[usize::from(b)];
            assert_eq!(kind & 1 != 0, b.is_ascii_alphabetic(), "{b}");
            assert_eq!(kind & 2 != 0, unleet(b) != b, "{b}");
        }
        assert!(has_leet_in_word(b"p0rn"));
        assert!(has_leet_in_word(b"x4"));
        assert!(has_leet_in_word(b"4x"));
        assert!(!has_leet_in_word(b"/2026/5/x-y"));
        assert!(!has_leet_in_word(b""));
    }

    #[test]
    fn search_scope_needs_whole_words() {
        let r = rules();
        let m = r.scan_search("how to Kill Myself");
        assert_eq!(m.categories, CategorySet::of(Category::Suicide));
        assert_eq!(&*m.hits[0].keyword, "kill myself");
        assert!(r.scan_search("skill myselfie").categories.is_empty());
        assert!(!r.scan_search("self harming").categories.is_empty());
    }

    #[test]
    fn rule_errors_name_the_line() {
        let e =
            KeywordRules::parse("k.txt", "url gambling 10 casino\nurl gamble 10 x\n").unwrap_err();
        assert_eq!(e.to_string(), "k.txt:2: unknown category `gamble`");
        let e = KeywordRules::parse("k.txt", "url gambling ten casino").unwrap_err();
        assert_eq!(
            e.to_string(),
            "k.txt:1: `ten`: the weight is a number from 1 to 100"
        );
        let e = KeywordRules::parse("k.txt", "site gambling 10 casino").unwrap_err();
        assert_eq!(
            e.to_string(),
            "k.txt:1: `site`: a rule starts with url, search or neutral"
        );
    }

    #[test]
    fn builtin_rules_parse() {
        let r = KeywordRules::parse("builtin", BUILTIN).unwrap();
        assert!(r.len() > 100, "only {} built-in rules", r.len());
    }

    #[test]
    fn builtin_rules_avoid_the_scunthorpe_problem() {
        let r = KeywordRules::builtin();
        for host in [
            "essex.ac.uk",
            "sussex.ac.uk",
            "middlesex.ac.uk",
            "therapist.example",
            "analysis.example",
            "alphabet.com",
            "scunthorpe.gov.uk",
            "cocktails.example",
            "expertsexchange.com",
            "penistone.example",
            "classic.example",
            "analytics.google.com",
            "sextant.example",
            "bbc.co.uk",
            "shakespeare.org.uk",
            "better.example",
        ] {
            let m = r.scan_url(host, "");
            assert!(m.categories.is_empty(), "{host} matched {:?}", m.hits);
        }
        assert!(
            !r.scan_url("freepornvideos.example", "")
                .categories
                .is_empty()
        );
        assert!(
            !r.scan_url("best-online-casino.example", "")
                .categories
                .is_empty()
        );
        assert!(
            !r.scan_url("unblock-proxy.example", "")
                .categories
                .is_empty()
        );
    }
}
