//! The compiled rule set and its keyword prefilter.
//!
//! One Aho-Corasick pass (a DFA, ASCII-case-insensitive) over the input finds
//! the keywords. Each hit opens a window around it for the rules that keyword
//! announces; overlapping windows of one rule are merged, and only there the
//! rule's expression runs. Clean input thus costs one linear pass, and the
//! expression work is bounded by the windows, whatever the input.

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, util::captures::Captures};

use crate::Error;
use crate::rules::{self, RuleDef};
use crate::validate;

pub(crate) struct Compiled {
    pub def: RuleDef,
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

pub(crate) struct RuleSet {
    rules: Vec<Compiled>,
    keywords: AhoCorasick,
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
                re,
                s,
                n,
                u,
                v,
                p,
                q,
                t,
            });
        }
        // The search below is non-overlapping and leftmost-longest, which lets
        // the automaton run as a DFA at full speed. A keyword occurrence it
        // does not report always overlaps one it does: it lies inside it, or
        // starts inside it and runs past its end. So each keyword also lends
        // its rules to every keyword it can overlap that way, with the window
        // widened by its own length.
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
        let keywords = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&words)
            .map_err(|e| Error::Rule {
                rule: "prefilter",
                message: e.to_string(),
            })?;
        Ok(RuleSet {
            rules,
            keywords,
            keyword_rules,
        })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn ids(&self) -> Vec<&'static str> {
        self.rules.iter().map(|r| r.def.id).collect()
    }

    /// Runs every rule over `hay`, calling `f` for each accepted match.
    pub fn scan<'h>(&self, hay: &'h [u8], mut f: impl FnMut(RuleHit<'h>)) {
        // (rule, window) for each keyword hit of a rule that can start before
        // its keyword; rules that start at it search anchored there instead.
        let mut windows: Vec<(u16, usize, usize)> = Vec::new();
        for m in self.keywords.find_iter(hay) {
            for a in &self.keyword_rules[m.pattern().as_usize()] {
                let rule = &self.rules[usize::from(a.rule)];
                let end = m
                    .end()
                    .saturating_add(rule.def.after + a.extra)
                    .min(hay.len());
                if !a.borrowed && rule.def.before == 0 {
                    let input = Input::new(hay)
                        .range(m.start()..end)
                        .anchored(Anchored::Yes);
                    self.run_rule(rule, hay, input, &mut f);
                } else {
                    windows.push((a.rule, m.start().saturating_sub(rule.def.before), end));
                }
            }
        }
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
            self.run_rule(&self.rules[usize::from(rule)], hay, input, &mut f);
        }
    }

    /// Every accepted match of `rule` within `input`'s range (once, if the
    /// search is anchored).
    fn run_rule<'h>(
        &self,
        rule: &Compiled,
        hay: &'h [u8],
        mut input: Input<'h>,
        f: &mut impl FnMut(RuleHit<'h>),
    ) {
        let mut caps = rule.re.create_captures();
        let end = input.end();
        while input.start() < end {
            rule.re.search_captures(&input, &mut caps);
            let Some(m) = caps.get_match() else { break };
            let next = if m.end() > input.start() {
                m.end()
            } else {
                input.start() + 1
            };
            input.set_start(next);
            if let Some(hit) = self.accept(rule, hay, &caps) {
                f(hit);
            }
            if input.get_anchored().is_anchored() {
                break;
            }
        }
    }

    fn accept<'h>(&self, rule: &Compiled, hay: &'h [u8], caps: &Captures) -> Option<RuleHit<'h>> {
        let secret = span(caps, Some(rule.s))?;
        let groups = validate::Groups {
            secret: &hay[secret.clone()],
            name: span(caps, rule.n).map(|r| &hay[name_start(hay, r.start)..r.end]),
            user: span(caps, rule.u).map(|r| &hay[r]),
            operator: span(caps, rule.p).map(|r| &hay[r]),
            quoted: span(caps, rule.q).is_some(),
            after: span(caps, rule.t).map(|r| &hay[r]),
        };
        if !validate::accept(rule.def.check, &groups) {
            return None;
        }
        let preview = span(caps, rule.v).map_or(groups.secret, |r| &hay[r]);
        Some(RuleHit {
            rule: rule.def.id,
            range: secret,
            preview,
        })
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
