//! The compiled rule set and its keyword prefilter.
//!
//! The keywords are found as one leftmost-longest, non-overlapping,
//! ASCII-case-insensitive Aho-Corasick search would find them, but faster: a
//! branch-free filter on hashed three-byte windows (`KeywordStarts`) passes
//! about one position in a hundred of source text, and only there the
//! automaton (a DFA) runs, anchored. Each hit opens a window around it for
//! the rules that keyword announces; overlapping windows of one rule are
//! merged, and only there the rule's expression runs. Clean input thus costs
//! one linear pass, and the expression work is bounded by the windows,
//! whatever the input.

use std::ops::Range;

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::{Anchored as AcAnchored, MatchKind, StartKind, dfa::DFA};
use std::sync::OnceLock;

use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, util::captures::Captures};

use crate::Error;
use crate::rules::{self, Check, RuleDef};
use crate::validate;

pub(crate) struct Compiled {
    pub def: RuleDef,
    /// The expression, compiled the first time a keyword announces the rule:
    /// clean text never needs most of them, and compiling all of them up
    /// front was most of a short `scan`'s time (about 20 ms). A unit test
    /// compiles every rule, so `None` (a rule that does not compile) cannot
    /// ship.
    built: OnceLock<Option<Built>>,
}

struct Built {
    re: Regex,
    /// Capture-group indexes of `s` (the secret), and of the optional groups
    /// (see `rules`) when the pattern has them.
    s: usize,
    n: Option<usize>,
    u: Option<usize>,
    v: Option<usize>,
    p: Option<usize>,
    q: Option<usize>,
    t: Option<usize>,
}

/// What a rule match hands to the caller: the secret's range in the scanned
/// buffer and the bytes to preview.
pub(crate) struct RuleHit<'h> {
    pub rule: &'static str,
    pub range: Range<usize>,
    pub preview: &'h [u8],
}

/// Memory one scan (with all its decoded layers) reuses: the windows to
/// search and one set of captures per rule, made when first needed.
#[derive(Default)]
pub(crate) struct Scratch {
    windows: Vec<(u16, usize, usize)>,
    captures: Vec<Option<Captures>>,
    /// Per anchored rule, for the scan under way: the keyword hit it was
    /// last searched from, a stretch proved to hold no match (`Clear`),
    /// how many searches in a row started inside the match before, and
    /// where that match ended.
    anchored: Vec<(Option<usize>, Clear, u32, usize)>,
    /// Bytes the searches from keyword hits of the last scan covered
    /// (their ranges summed), the only searches that could cover the same
    /// bytes again and again: windowed rules search merged windows once.
    pub(crate) searched: usize,
}

/// Searches of one rule in a row whose matches overlap before the input is
/// a [`KEYWORD_FLOOD_RULE`] finding.
const MAX_OVERLAPPING_MATCHES: u32 = 64;
/// Input made of a rule's keyword over and over inside its own pattern: no
/// text is, and reading each hit would cost the square of its length.
pub(crate) const KEYWORD_FLOOD_RULE: &str = "keyword-flood";

/// No match of a rule starts in `from..before` and ends by `until`.
#[derive(Clone, Copy, Default)]
struct Clear {
    from: usize,
    before: usize,
    until: usize,
}

pub(crate) struct RuleSet {
    rules: Vec<Compiled>,
    /// The keywords, run anchored (see `RuleSet::find_keywords`).
    keywords: DFA,
    keywords_start: StateID,
    /// Where a keyword can start, to run `keywords` only there.
    starts: KeywordStarts,
    /// For each keyword pattern id, the rules it announces.
    keyword_rules: Vec<Vec<Announce>>,
}

/// A rule announced by a keyword hit.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Announce {
    rule: u16,
    /// The hit is of another keyword that overlaps this rule's own (see
    /// `RuleSet::new`): the rule's keyword may sit anywhere in the hit, and
    /// may reach `extra` bytes past it.
    borrowed: bool,
    extra: usize,
}

impl Compiled {
    fn built(&self) -> Option<&Built> {
        self.built.get_or_init(|| build(&self.def).ok()).as_ref()
    }
}

/// Compile one rule's expression and find its groups.
fn build(def: &RuleDef) -> Result<Built, Error> {
    let re = Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(
            Regex::config()
                .utf8_empty(false)
                .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                .match_kind(regex_automata::MatchKind::LeftmostFirst),
        )
        .build(def.pattern)
        .map_err(|e| Error::Rule {
            rule: def.id,
            message: e.to_string(),
        })?;
    let group = |name: &str| {
        re.group_info()
            .to_index(regex_automata::PatternID::ZERO, name)
    };
    let s = group("s").ok_or_else(|| Error::Rule {
        rule: def.id,
        message: "no group `s`".into(),
    })?;
    let (n, u, v) = (group("n"), group("u"), group("v"));
    let (p, q, t) = (group("p"), group("q"), group("t"));
    Ok(Built {
        re,
        s,
        n,
        u,
        v,
        p,
        q,
        t,
    })
}

/// Upper bound on one compiled expression, far above what the rules need; a
/// guard against a rule that would blow up.
const REGEX_SIZE_LIMIT: usize = 8 << 20;

impl RuleSet {
    pub fn new() -> Result<RuleSet, Error> {
        let defs = rules::all();
        let mut rules = Vec::with_capacity(defs.len());
        let mut words: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<Announce>> = Vec::new();
        for (i, def) in defs.into_iter().enumerate() {
            let index = u16::try_from(i).map_err(|_| Error::Rule {
                rule: def.id,
                message: "too many rules".into(),
            })?;
            let own = Announce {
                rule: index,
                borrowed: false,
                extra: 0,
            };
            for kw in def.keywords {
                let kw = kw.to_ascii_lowercase();
                match words.iter().position(|w| *w == kw) {
                    Some(p) => keyword_rules[p].push(own),
                    None => {
                        words.push(kw);
                        keyword_rules.push(vec![own]);
                    }
                }
            }
            rules.push(Compiled {
                def,
                built: OnceLock::new(),
            });
        }
        // The search below is non-overlapping and leftmost-longest, which lets
        // the automaton run as a DFA, anchored at each candidate start. A
        // keyword occurrence it does not report always overlaps one it does:
        // it lies inside it, or starts inside it and runs past its end. So
        // each keyword also lends its rules to every keyword it can overlap
        // that way, with the window widened by its own length.
        let lent: Vec<Vec<Announce>> = words
            .iter()
            .map(|long| {
                let mut extra = Vec::new();
                for (j, short) in words.iter().enumerate() {
                    if short != long && overlaps_inside(long, short) {
                        for a in &keyword_rules[j] {
                            extra.push(Announce {
                                rule: a.rule,
                                borrowed: true,
                                extra: short.len(),
                            });
                        }
                    }
                }
                extra
            })
            .collect();
        for (own, extra) in keyword_rules.iter_mut().zip(lent) {
            for a in extra {
                if !own.iter().any(|o| o.rule == a.rule) {
                    own.push(a);
                }
            }
        }
        let starts = KeywordStarts::new(&words);
        let prefilter_error = |message: String| Error::Rule {
            rule: "prefilter",
            message,
        };
        let keywords = DFA::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .start_kind(StartKind::Anchored)
            .prefilter(false)
            .build(&words)
            .map_err(|e| prefilter_error(e.to_string()))?;
        let keywords_start = keywords
            .start_state(AcAnchored::Yes)
            .map_err(|e| prefilter_error(e.to_string()))?;
        Ok(RuleSet {
            rules,
            keywords,
            keywords_start,
            starts,
            keyword_rules,
        })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Rules that read a name before the value they report: a name group,
    /// or a named value judged by its entropy (`context` rules, whose
    /// keyword, the name, may come before the match).
    pub fn reads_a_name(&self, id: &str) -> bool {
        self.rules.iter().any(|r| {
            r.def.id == id
                && (r.def.pattern.contains("(?P<n>")
                    || (r.def.before > 0 && matches!(r.def.check, Check::Entropy(_))))
        })
    }

    pub fn ids(&self) -> Vec<&'static str> {
        self.rules.iter().map(|r| r.def.id).collect()
    }

    /// Runs every rule over `hay`, calling `f` for each accepted match.
    #[cfg(test)]
    pub fn scan<'h>(&self, hay: &'h [u8], f: impl FnMut(RuleHit<'h>)) {
        self.scan_with(hay, &mut Scratch::default(), f);
    }

    /// [`RuleSet::scan`] with memory kept between calls.
    pub fn scan_with<'h>(
        &self,
        hay: &'h [u8],
        scratch: &mut Scratch,
        mut f: impl FnMut(RuleHit<'h>),
    ) {
        // (rule, window) for each keyword hit of a rule that can start before
        // its keyword; rules that start at it search anchored there instead.
        let windows = &mut scratch.windows;
        windows.clear();
        let caps = &mut scratch.captures;
        let anchored = &mut scratch.anchored;
        anchored.clear();
        anchored.resize(self.rules.len(), (None, Clear::default(), 0, 0));
        let searched = &mut scratch.searched;
        *searched = 0;
        self.find_keywords(hay, |keyword, m| {
            for a in &self.keyword_rules[keyword] {
                let rule = &self.rules[usize::from(a.rule)];
                let reach = rule.def.after + a.extra;
                let end = m.end.saturating_add(reach).min(hay.len());
                if !a.borrowed && rule.def.before == 0 {
                    let (last, clear, overlapping, match_end) = &mut anchored[usize::from(a.rule)];
                    if clear.from <= m.start && m.start < clear.before && end <= clear.until {
                        continue;
                    }
                    let dense = last.is_some_and(|l| m.start - l < reach);
                    // Inside the match the last search found (not merely
                    // near it, as keys in a list are).
                    let nested = dense && m.start < *match_end;
                    // Hits closer together than the rule reaches (its
                    // keyword repeated inside its own pattern, `-eyJ-eyJ…`)
                    // would each search up to `after` bytes, the same bytes
                    // again and again: one search for the first match
                    // over a longer stretch proves most of them empty.
                    if dense && let Some(built) = rule.built() {
                        let until = end.saturating_add(reach).min(hay.len());
                        *searched += until - m.start;
                        let first = built.re.find(Input::new(hay).range(m.start..until));
                        let before = first.map_or(until, |f| f.start());
                        *match_end = first.map_or(0, |f| f.end());
                        if before > m.start {
                            *clear = Clear {
                                from: m.start,
                                before,
                                until,
                            };
                            continue;
                        }
                    }
                    // A match from every hit, each inside the one before
                    // (the keyword repeated inside a long match): each is
                    // searched whole, so a run of them is quadratic. No
                    // text has dozens; past that the rest of the input is
                    // one finding of its own and the rule searches no more.
                    *overlapping = if nested { *overlapping + 1 } else { 0 };
                    if *overlapping > MAX_OVERLAPPING_MATCHES {
                        *clear = Clear {
                            from: m.start,
                            before: usize::MAX,
                            until: usize::MAX,
                        };
                        // The rest of the input: redaction must cover all
                        // of what the rule no longer reads.
                        f(RuleHit {
                            rule: KEYWORD_FLOOD_RULE,
                            range: m.start..hay.len(),
                            preview: &hay[m.start..m.start],
                        });
                        continue;
                    }
                    *last = Some(m.start);
                    *searched += end - m.start;
                    let input = Input::new(hay).range(m.start..end).anchored(Anchored::Yes);
                    self.run_rule(a.rule, hay, input, caps, &mut f);
                } else {
                    windows.push((a.rule, m.start.saturating_sub(rule.def.before), end));
                }
            }
        });
        if windows.is_empty() {
            return;
        }
        windows.sort_unstable();
        let mut i = 0;
        while i < windows.len() {
            let (rule, start, mut end) = windows[i];
            i += 1;
            while i < windows.len() && windows[i].0 == rule && windows[i].1 <= end {
                end = end.max(windows[i].2);
                i += 1;
            }
            let input = Input::new(hay).range(start..end);
            self.run_rule(rule, hay, input, caps, &mut f);
        }
    }

    /// The keyword hits a leftmost-longest, non-overlapping search over `hay`
    /// reports, in order, as (keyword index, range). The automaton runs
    /// anchored, only where `KeywordStarts` says a keyword can start: the
    /// leftmost hit at or after a position is the longest one anchored at the
    /// first such place where one matches.
    fn find_keywords(&self, hay: &[u8], mut f: impl FnMut(usize, Range<usize>)) {
        let mut next = 0;
        self.starts.for_each(hay, |p| {
            if p < next {
                return;
            }
            if let Some((keyword, end)) = self.keyword_at(hay, p) {
                next = end;
                f(keyword, p..end);
            }
        });
    }

    /// The longest keyword that starts at `at`, as (keyword index, end).
    fn keyword_at(&self, hay: &[u8], at: usize) -> Option<(usize, usize)> {
        let dfa = &self.keywords;
        let mut sid = self.keywords_start;
        let mut found = None;
        for (i, &b) in hay[at..].iter().enumerate() {
            sid = dfa.next_state(AcAnchored::Yes, sid, b);
            if dfa.is_special(sid) {
                if dfa.is_dead(sid) {
                    break;
                }
                if dfa.is_match(sid) {
                    found = Some((dfa.match_pattern(sid, 0).as_usize(), at + i + 1));
                }
            }
        }
        found
    }

    /// Every accepted match of `rule` within `input`'s range (once, if the
    /// search is anchored).
    fn run_rule<'h>(
        &self,
        index: u16,
        hay: &'h [u8],
        mut input: Input<'h>,
        caps: &mut Vec<Option<Captures>>,
        f: &mut impl FnMut(RuleHit<'h>),
    ) {
        let rule = &self.rules[usize::from(index)];
        let Some(built) = rule.built() else {
            return;
        };
        if caps.is_empty() {
            caps.resize_with(self.rules.len(), || None);
        }
        let caps = caps[usize::from(index)].get_or_insert_with(|| built.re.create_captures());
        let end = input.end();
        while input.start() < end {
            built.re.search_captures(&input, caps);
            let Some(m) = caps.get_match() else { break };
            let next = if m.end() > input.start() {
                m.end()
            } else {
                input.start() + 1
            };
            input.set_start(next);
            if let Some(hit) = self.accept(rule, built, hay, caps) {
                f(hit);
            }
            if input.get_anchored().is_anchored() {
                break;
            }
        }
    }

    fn accept<'h>(
        &self,
        rule: &Compiled,
        built: &Built,
        hay: &'h [u8],
        caps: &Captures,
    ) -> Option<RuleHit<'h>> {
        let secret = span(caps, Some(built.s))?;
        let groups = validate::Groups {
            secret: &hay[secret.clone()],
            name: span(caps, built.n).map(|r| &hay[name_start(hay, r.start)..r.end]),
            user: span(caps, built.u).map(|r| &hay[r]),
            operator: span(caps, built.p).map(|r| &hay[r]),
            quoted: span(caps, built.q).is_some(),
            after: span(caps, built.t).map(|r| &hay[r]),
        };
        if !validate::accept(rule.def.check, &groups) {
            return None;
        }
        let preview = span(caps, built.v).map_or(groups.secret, |r| &hay[r]);
        Some(RuleHit {
            rule: rule.def.id,
            range: secret,
            preview,
        })
    }
}

/// Bits of the index into the table of keyword starts: 128 KiB, few enough
/// collisions that almost every candidate is a real keyword prefix.
const START_BITS: u32 = 17;
/// Clears bit 5 of every byte: folds ASCII case (and pairs some punctuation).
const FOLD: u64 = 0xDFDF_DFDF_DFDF_DFDF;
/// A multiplier whose low 40 bits are zero: the product's top bits then
/// depend on the low three bytes of the multiplicand only.
const START_MUL: u64 = 0x9E37_79B9_7F4A_7C15 << 40;

/// A filter for the places where a keyword can start: a table indexed by a
/// hash of the first three bytes (two for a two-byte keyword, with every third
/// byte), with ASCII case folded by clearing bit 5 of each byte. Folding maps
/// both cases of a letter together (and some punctuation pairs, which only
/// adds candidates), so every ASCII-case-insensitive occurrence of a keyword
/// starts at a position the filter passes. Each position costs a shift, a
/// multiplication and a table load, without branches and independent of the
/// previous position, instead of a dependent automaton step per byte; in
/// source text about one position in a hundred passes.
struct KeywordStarts {
    /// A fixed size, so that indexing with a slot needs no bounds check.
    table: Box<[u8; 1 << START_BITS]>,
}

/// The table slot of the three bytes at the bottom of `folded`.
fn start_slot(folded: u64) -> usize {
    (folded.wrapping_mul(START_MUL) >> (64 - START_BITS)) as usize
}

fn fold3(a: u8, b: u8, c: u8) -> u64 {
    u64::from_le_bytes([a, b, c, 0, 0, 0, 0, 0]) & FOLD
}

fn word_at(hay: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&hay[at..at + 8]);
    u64::from_le_bytes(w) & FOLD
}

impl KeywordStarts {
    fn new(words: &[String]) -> KeywordStarts {
        let mut table: Box<[u8; 1 << START_BITS]> = Box::new([0; 1 << START_BITS]);
        let mut every = false;
        for w in words {
            match *w.as_bytes() {
                [a, b, c, ..] => table[start_slot(fold3(a, b, c))] = 1,
                [a, b] => (0..=255u8).for_each(|c| table[start_slot(fold3(a, b, c))] = 1),
                // A one-byte keyword makes every position a candidate.
                _ => every = true,
            }
        }
        if every {
            table.fill(1);
        }
        KeywordStarts { table }
    }

    fn passes(&self, folded: u64) -> u64 {
        u64::from(self.table[start_slot(folded)])
    }

    /// Calls `f` with every position of `hay` where a keyword can start, in
    /// order.
    fn for_each(&self, hay: &[u8], mut f: impl FnMut(usize)) {
        let n = hay.len();
        // Positions below `full` have three bytes to look at.
        let full = n.saturating_sub(2);
        let mut base = 0;
        // 64 positions at a time, from eight-byte words: the word at `k`
        // holds the three bytes of positions `k..k + 6`, and the word at
        // `k + 2` those of `k + 6` and `k + 7`.
        while base + 64 <= full {
            let block = &hay[base..base + 66];
            let mut mask = 0u64;
            for k in 0..8 {
                let w = word_at(block, 8 * k);
                let w2 = word_at(block, 8 * k + 2);
                // Constant shifts within the eight positions, one variable
                // shift for the group.
                let mut eight = 0u64;
                for j in 0..6 {
                    eight |= self.passes(w >> (8 * j)) << j;
                }
                for j in 4..6 {
                    eight |= self.passes(w2 >> (8 * j)) << (2 + j);
                }
                mask |= eight << (8 * k);
            }
            while mask != 0 {
                f(base + mask.trailing_zeros() as usize);
                mask &= mask - 1;
            }
            base += 64;
        }
        for p in base..full {
            if self.passes(fold3(hay[p], hay[p + 1], hay[p + 2])) != 0 {
                f(p);
            }
        }
        // The last two positions hold no three bytes: a two-byte keyword can
        // still start there, so they are always candidates.
        (full..n).for_each(f);
    }
}

/// Where a name that reaches `at` starts: up to 30 name bytes (`[\w.-]`)
/// before it, so `next_page_token` is judged whole although the match starts
/// at `token`.
fn name_start(hay: &[u8], at: usize) -> usize {
    let lo = at.saturating_sub(30);
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || b"_.-".contains(&b);
    hay[lo..at]
        .iter()
        .rposition(|&b| !name_byte(b))
        .map_or(lo, |p| lo + p + 1)
}

/// True when `short` can overlap an occurrence of `long` without starting
/// where it starts: it lies inside `long`, or a proper suffix of `long` is a
/// prefix of `short`.
fn overlaps_inside(long: &str, short: &str) -> bool {
    long.contains(short) || (1..long.len()).any(|i| short.starts_with(&long[i..]))
}

fn span(caps: &Captures, group: Option<usize>) -> Option<Range<usize>> {
    caps.get_group(group?).map(|s| s.range())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_compiles_and_has_keywords() {
        let set = RuleSet::new().expect("rules compile");
        let ids = set.ids();
        assert!(ids.len() >= 80, "{} rules", ids.len());
        let mut seen = std::collections::HashSet::new();
        for r in &set.rules {
            // Rules compile lazily in use; each must compile, with its group.
            if let Err(e) = build(&r.def) {
                panic!("{e}");
            }
            assert!(seen.insert(r.def.id), "duplicate rule id {}", r.def.id);
            assert!(!r.def.keywords.is_empty(), "{} has no keyword", r.def.id);
            // A keyword the expression cannot contain would make the rule dead.
            assert!(
                r.def.keywords.iter().all(|k| !k.is_empty()),
                "{} has an empty keyword",
                r.def.id
            );
        }
    }

    #[test]
    fn overlapping_keywords() {
        assert!(overlaps_inside("_authtoken", "token"));
        assert!(overlaps_inside("xoxe.xox", "xoxp-"));
        assert!(!overlaps_inside("ghp_", "gho_"));
        // A keyword hidden by a longer hit still announces its rules: `xoxp-`
        // starts inside the `xoxe.xox` hit here.
        let set = RuleSet::new().expect("rules compile");
        let mut hits = Vec::new();
        let text =
            b"a xoxe.xoxp-12345678901-12345678901-123456789012-0123456789abcdef0123456789abcdef";
        set.scan(text, |h| hits.push(h.rule));
        assert!(hits.contains(&"slack-user-token"), "{hits:?}");
    }

    /// A rule's keyword repeated inside its own pattern (`-` is in the JWT
    /// alphabet and ends a word, so `\b` holds before every `eyJ` of
    /// `-eyJ-eyJ…`): each hit searched up to the rule's reach, thousands of
    /// times the input. The work stays proportional to the input, and a
    /// token after such a run is still found.
    #[test]
    fn a_keyword_repeated_inside_its_pattern_costs_linear_work() {
        let set = RuleSet::new().expect("rules compile");
        for filler in ["-eyJ", "-ops_eyJ", "+ABSK", "-pypi-AgE"] {
            let hay = filler.repeat(256 * 1024 / filler.len());
            let mut scratch = Scratch::default();
            let mut flood = Vec::new();
            set.scan_with(hay.as_bytes(), &mut scratch, |h| {
                if h.rule == KEYWORD_FLOOD_RULE {
                    flood.push(h.range);
                }
            });
            // What the rule stops reading is all in the finding (redaction
            // must cover it).
            assert!(
                flood.iter().all(|r| r.end == hay.len()),
                "{filler}: {flood:?}"
            );
            assert!(
                scratch.searched <= 8 * hay.len(),
                "{filler}: {} bytes searched for {}",
                scratch.searched,
                hay.len()
            );
        }
        // Many tokens in a list are near each other, not inside each other:
        // each is its own finding, and the list is no flood.
        let list: Vec<String> = (0..100)
            .map(|i| format!("ghp_{:036}", 10u128.pow(30) * 7 + i * 7919))
            .collect();
        let hay = list.join(",");
        let mut hits = Vec::new();
        set.scan(hay.as_bytes(), |h| hits.push(h.rule));
        assert!(!hits.contains(&KEYWORD_FLOOD_RULE), "{hits:?}");
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let hay = format!("{} {jwt} ", "-eyJ".repeat(5000));
        let mut hits = Vec::new();
        set.scan(hay.as_bytes(), |h| hits.push(h.rule));
        assert!(hits.contains(&"jwt"), "{hits:?}");
    }

    #[test]
    fn windows_respect_context_on_both_sides() {
        let set = RuleSet::new().expect("rules compile");
        // The token is glued to a longer word: `\b` must see the byte before
        // the window even though the window starts at the keyword.
        let mut hits = Vec::new();
        set.scan(b"xghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z0", |h| {
            hits.push(h.rule)
        });
        assert!(hits.is_empty(), "{hits:?}");
    }
}
