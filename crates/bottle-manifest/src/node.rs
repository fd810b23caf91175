//! YAML text to a small tree of [`Node`]s that remember their line.
//!
//! The manifest is parsed in two steps: YAML to this untyped tree (here), then
//! the tree to typed bottles and agents (`bottle.rs`, `agent.rs`). The second
//! step owns every message a user reads, so unknown keys get a "did you mean",
//! type errors name the key, and no message ever quotes a value (a literal env
//! value may be a password).
//!
//! Hostile documents are refused by the parser's budget before they are
//! expanded: alias bombs, deep nesting and huge documents all stop here, for
//! every key, including the ones the typed step would ignore.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Deepest nesting of collections a manifest may use.
pub const MAX_DEPTH: usize = 32;
/// Most nodes (scalars and collections) in one front matter.
pub const MAX_NODES: usize = 20_000;
/// Most alias uses (`*name`) in one front matter.
pub const MAX_ALIASES: usize = 64;
/// Most events that alias replay may add in total.
pub const MAX_REPLAYED_EVENTS: usize = 5_000;

/// One YAML value and the (1-based) line it starts on; 0 when unknown.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: u32,
    /// The 1-based column the value starts at; 0 when unknown.
    pub column: u32,
    /// A number's or boolean's text as written (`3.10`, `0x1F`, `TRUE`):
    /// YAML reads `3.10` as 3.1, but a value the user wrote is used as text
    /// (env, memory). `None` for other kinds, or when the parser gave no
    /// position to take the text from.
    pub text: Option<String>,
    /// Byte range of the scalar in the YAML text, from the parser until
    /// [`parse`] has taken `text` out of it.
    span: Option<(usize, usize)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in document order, each with the line the key is on.
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub line: u32,
}

/// Why the YAML could not be read; the caller adds the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// What is wrong, in our words or the parser's, without its location
    /// suffix or its advice to the programmer.
    pub message: String,
    /// File line (the front matter's offset added), 1-based.
    pub line: Option<u32>,
    /// 1-based column, in characters.
    pub column: Option<u32>,
    /// What the user can do about it.
    pub hint: &'static str,
    /// The text is not well-formed YAML, rather than a value that does not
    /// fit the type it is read into (which a typed reader, such as the
    /// proxy's config, gets too; the manifest's tree takes any value).
    pub syntax: bool,
}

impl Value {
    /// A word for the kind of value, for "expected a list, found a string".
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "a number",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parse front-matter YAML into a tree. `first_line` is the file line the
/// YAML text starts on, so every line in the tree is a line of the file.
pub fn parse(yaml: &str, first_line: u32) -> Result<Node, YamlError> {
    let offset = first_line.saturating_sub(1);
    if yaml.trim().is_empty() {
        return Ok(Node {
            value: Value::Map(Vec::new()),
            line: first_line,
            column: 0,
            text: None,
            span: None,
        });
    }
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    alias_limits.max_replay_stack_depth = 8;
    alias_limits.max_alias_expansions_per_anchor = 64;
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_aliases: MAX_ALIASES,
            max_documents: 1,
            max_total_scalar_bytes: 1024 * 1024,
        },
        alias_limits: alias_limits,
        with_snippet: false,
        // YAML 1.2 booleans only: `N: 3` or `EDITOR: yes` must stay text.
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
    };
    let mut node: Node =
        serde_saphyr::from_str_with_options(yaml, options).map_err(|e| describe(&e, offset))?;
    finish(&mut node, offset, yaml);
    Ok(node)
}

/// A parser error in our words: the location taken out of the message (the
/// parser's "at line N" counts from the start of the YAML, not the file),
/// its advice to programmers dropped ("set DuplicateKeyPolicy in Options"),
/// and a hint for the user. `line_offset` is added to the line. Values
/// never reach the message: the tree accepts any scalar, so the parser
/// only complains about structure.
pub fn describe(e: &serde_saphyr::Error, line_offset: u32) -> YamlError {
    use serde_saphyr::{Error as E, MessageFormatter, UserMessageFormatter};
    let location = e.location().filter(|l| l.line() > 0);
    // The error itself, out of the wrappers that only add where an alias
    // was used or a snippet.
    let mut e = e;
    while let E::AliasError { error, .. } | E::WithSnippet { error, .. } = e {
        e = error;
    }
    let raw = UserMessageFormatter.format_message(e);
    let first = raw.lines().next().unwrap_or("").trim();
    // The scanner's errors and the document's structure and size; the
    // rest are values that do not fit their type.
    let syntax = matches!(
        e,
        E::ExternalMessage { .. }
            | E::Eof { .. }
            | E::UnknownAnchor { .. }
            | E::DuplicateMappingKey { .. }
            | E::Budget { .. }
            | E::AliasReplayLimitExceeded { .. }
            | E::AliasExpansionLimitExceeded { .. }
            | E::AliasReplayStackDepthExceeded { .. }
            | E::AliasReplayCounterOverflow { .. }
    );
    let (message, hint) = match e {
        _ if first.starts_with("unclosed bracket '['") => (
            "a list opened with `[` is never closed".to_string(),
            syntax_hint(first),
        ),
        _ if first.starts_with("unclosed bracket '{'") => (
            "a mapping opened with `{` is never closed".to_string(),
            syntax_hint(first),
        ),
        E::DuplicateMappingKey { key: Some(k), .. } => (
            format!("the key `{}` is given twice in one mapping", sanitize(k)),
            DUPLICATE_HINT,
        ),
        E::DuplicateMappingKey { .. } => (
            "a key is given twice in one mapping".to_string(),
            DUPLICATE_HINT,
        ),
        E::UnknownAnchor { .. } => (
            "an alias (`*name`) names no anchor (`&name`) above it".to_string(),
            ANCHOR_HINT,
        ),
        E::Budget { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => (
            "the YAML is too large, too deeply nested or uses too many aliases".to_string(),
            "manifests allow 32 levels of nesting, 20,000 values and 64 aliases; \
             write the values out instead of expanding aliases",
        ),
        _ => (scanner_words(first), syntax_hint(first)),
    };
    YamlError {
        message: if message.is_empty() {
            "the YAML cannot be read".to_string()
        } else {
            message
        },
        line: location.map(|l| to_u32(l.line()).saturating_add(line_offset)),
        column: location.map(|l| to_u32(l.column())).filter(|&c| c > 0),
        hint,
        syntax,
    }
}

/// The scanner's most common messages in the user's terms; any other in
/// the parser's own words (control characters removed).
fn scanner_words(first: &str) -> String {
    let m = first.to_ascii_lowercase();
    let ours = if m.contains("tabs disallowed") || m.contains("found a tab") {
        "a tab is used where YAML needs spaces"
    } else if m.contains("did not find expected key") {
        "this line does not line up with the keys of the mapping above it"
    } else if m.contains("did not find expected '-'") {
        "this line does not line up with the items (`- …`) of the list above it"
    } else if m.contains("unknown escape") {
        "a `\\` in a double-quoted value starts an escape YAML does not know"
    } else if m.contains("misplaced bracket") {
        "a closing `]` or `}` closes nothing"
    } else if m.starts_with("unexpected character: ") {
        // The parser quotes the character as `c'. (Lowercasing kept the
        // prefix's length.)
        let c = first.get("unexpected character: ".len()..).unwrap_or("");
        let c: String = c.chars().filter(|&ch| ch != '`' && ch != '\'').collect();
        return if c.chars().count() == 1 && !c.chars().any(char::is_control) {
            format!("a value or key cannot start with `{c}` unless it is quoted")
        } else {
            "a value or key starts with a character that must be quoted".to_string()
        };
    } else {
        return sanitize(first);
    };
    ours.to_string()
}

/// The parser's scanner messages name the construct; say what usually
/// causes each in a YAML file (a manifest, the proxy's config).
pub fn syntax_hint(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("tab") {
        "indent with spaces; YAML does not allow tabs in indentation"
    } else if m.contains("unknown value") || m.contains("anchor") {
        ANCHOR_HINT
    } else if m.contains("duplicate") {
        DUPLICATE_HINT
    } else if m.contains("'{'") || m.contains("flow mapping") {
        "close the mapping with `}`, or quote the value if the `{` is text"
    } else if m.contains("'['") || m.contains("flow sequence") {
        "close the list with `]`, or quote the value if the `[` is text"
    } else if m.contains("unknown escape") {
        "in double quotes write a backslash as `\\\\`, or put the value in single quotes \
         (`'C:\\dir'`), where a backslash is plain text"
    } else if m.contains("quote") || m.contains("quoted") {
        "close the quote on the value, or escape a quote inside it"
    } else if m.contains("unexpected character") || m.contains("misplaced bracket") {
        "quote the value (`key: \"…\"`) when it starts with a character YAML reserves, \
         such as `@`, `` ` ``, `%`, `]` or `}`"
    } else if m.contains("mapping values are not allowed") {
        "quote a value that contains `: ` (`key: \"a: b\"`), or put a nested mapping on \
         its own indented lines"
    } else if m.contains("did not find expected key")
        || m.contains("indentation")
        || m.contains("did not find expected '-'")
    {
        "keys of one mapping, and the `-` of one list, start in the same column; \
         check the indentation of this line and the one above"
    } else {
        "check the YAML at that place: indent with spaces, and quote values that \
         contain `: `, ` #` or start with `[`, `{`, `*`, `&` or `!`"
    }
}

const DUPLICATE_HINT: &str = "remove one of the two; each key appears once in a mapping";
const ANCHOR_HINT: &str =
    "define the anchor before the alias, or quote a value that starts with `*`";

/// Control characters out of a parser message, so it cannot move the
/// cursor or colour the terminal.
fn sanitize(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Make every line a file line, and take each number's and boolean's text
/// out of the YAML.
fn finish(node: &mut Node, offset: u32, yaml: &str) {
    if node.line > 0 {
        node.line = node.line.saturating_add(offset);
    }
    let span = node.span.take();
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| finish(n, offset, yaml)),
        Value::Map(entries) => {
            for (k, v) in entries {
                if k.line > 0 {
                    k.line = k.line.saturating_add(offset);
                }
                finish(v, offset, yaml);
            }
        }
        Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
            node.text = span
                .and_then(|(start, len)| yaml.get(start..start.checked_add(len)?))
                .filter(|t| is_plain_text(t))
                .map(str::to_string);
        }
        _ => {}
    }
}

/// The span really is the scalar alone: one plain word, not empty, with no
/// anchor, alias, tag, quote or comment in it. Anything else means the
/// parser's span covered more or less than the number, and a wrong text is
/// worse than none (the reader then asks to quote the value).
fn is_plain_text(t: &str) -> bool {
    !t.is_empty()
        && !t.starts_with(['&', '*', '!', '"', '\'', '#'])
        && !t.contains(|c: char| c.is_whitespace() || matches!(c, ',' | '[' | ']' | '{' | '}'))
}

// === impl Deserialize ===

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(d)?;
        let line = u32::try_from(spanned.referenced.line()).unwrap_or(0);
        let column = u32::try_from(spanned.referenced.column()).unwrap_or(0);
        // `defined`, not `referenced`: for an alias (`*x`) the text is the
        // anchored scalar's.
        let span = spanned.defined.span();
        let span = span
            .byte_offset()
            .zip(span.byte_len())
            .and_then(|(o, l)| Some((usize::try_from(o).ok()?, usize::try_from(l).ok()?)));
        Ok(Node {
            value: spanned.value,
            line,
            column,
            text: None,
            span,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v)
            .map(Value::Int)
            .unwrap_or(Value::Float(v as f64)))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v)
            .map(Value::Int)
            .unwrap_or(Value::Float(v as f64)))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(i64::try_from(v)
            .map(Value::Int)
            .unwrap_or(Value::Float(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Err(E::custom("binary values are not supported"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyName>>()? {
            let value = map.next_value::<Node>()?;
            let line = u32::try_from(key.referenced.line()).unwrap_or(0);
            entries.push((
                Key {
                    name: key.value.0,
                    line,
                },
                value,
            ));
        }
        Ok(Value::Map(entries))
    }
}

/// A mapping key as text: YAML allows numbers and booleans as keys, and env
/// names such as `1PASSWORD` are better reported as invalid names than as a
/// type error.
struct KeyName(String);

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a plain key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyName, E> {
                Ok(KeyName("null".to_string()))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(node: &Node) -> &[(Key, Node)] {
        match &node.value {
            Value::Map(m) => m,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn lines_are_file_lines() {
        let n = parse("a: 1\nenv:\n  B: x\nlist:\n  - y\n", 2).unwrap();
        let m = map(&n);
        assert_eq!(m[0].0.name, "a");
        assert_eq!(m[0].0.line, 2);
        assert_eq!(m[1].0.line, 3);
        let env = map(&m[1].1);
        assert_eq!(env[0].0.name, "B");
        assert_eq!(env[0].0.line, 4);
        assert_eq!(env[0].1.value, Value::Str("x".into()));
        match &m[2].1.value {
            Value::Seq(items) => assert_eq!(items[0].line, 6),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scalars_keep_their_kind() {
        let n = parse("a: 1\nb: true\nc: 1.5\nd: ~\ne: '1'\n", 1).unwrap();
        let kinds: Vec<_> = map(&n).iter().map(|(_, v)| v.value.kind()).collect();
        assert_eq!(
            kinds,
            ["a number", "a boolean", "a number", "nothing", "a string"]
        );
    }

    /// YAML reads `3.10` as 3.1 and `TRUE` as true; the text as written is
    /// kept beside the value, also through an alias and inside flow lists.
    #[test]
    fn numbers_and_booleans_keep_their_text() {
        let y = "a: 3.10\nb: 1.0\nc: 12345678901234567890\nd: &x 0x1F\ne: *x\n\
                 f: TRUE\ng: [1.50, +2]\nh: {k: 1e3}   # note\ni: -0.0\nj: '1.0'\n";
        let n = parse(y, 1).unwrap();
        let texts: Vec<_> = map(&n).iter().map(|(_, v)| v.text.as_deref()).collect();
        assert_eq!(
            &texts[..6],
            [
                Some("3.10"),
                Some("1.0"),
                Some("12345678901234567890"),
                Some("0x1F"),
                Some("0x1F"),
                Some("TRUE")
            ]
        );
        match &map(&n)[6].1.value {
            Value::Seq(items) => {
                let t: Vec<_> = items.iter().map(|i| i.text.as_deref()).collect();
                assert_eq!(t, [Some("1.50"), Some("+2")]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(map(&map(&n)[7].1)[0].1.text.as_deref(), Some("1e3"));
        assert_eq!(texts[8], Some("-0.0"));
        // A string needs no copy: its value is its text.
        assert_eq!(texts[9], None);
    }

    #[test]
    fn syntax_error_has_a_file_line() {
        let e = parse("a: 1\nb: [unclosed\n", 5).unwrap_err();
        assert!(e.line.is_some_and(|l| l >= 5), "{e:?}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert!(parse("a: 1\na: 2\n", 1).is_err());
    }

    /// The parser's own "at line N" (counted from the YAML, not the file)
    /// and its advice to programmers are not passed on; the place is a
    /// file line and column, and the hint is for the user.
    #[test]
    fn syntax_errors_are_in_our_words() {
        // A key with an escape character: the message keeps the key but
        // not the character that would drive the terminal.
        let once = parse("\"a\\e[31m\": 1\n", 1).unwrap();
        assert_eq!(map(&once)[0].0.name, "a\u{1b}[31m");
        let e = parse("\"a\\e[31m\": 1\n\"a\\e[31m\": 2\n", 1).unwrap_err();
        assert_eq!(e.message, "the key `a [31m` is given twice in one mapping");
        let e = parse("a: 1\na: 2\n", 2).unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.line, e.column),
            (
                "the key `a` is given twice in one mapping",
                Some(3),
                Some(1)
            )
        );
        assert!(e.hint.starts_with("remove one of the two"), "{e:?}");

        let e = parse("env:\n  A: b\n  B: [unclosed\n", 2).unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.line, e.column),
            ("a list opened with `[` is never closed", Some(4), Some(6))
        );
        assert!(e.hint.contains("`]`"), "{e:?}");

        for (yaml, hint) in [
            ("env:\n\tA: b\n", "tabs"),
            ("key: value: other\n", "quote a value that contains `: `"),
            ("env:\n  A: b\n B: c\n", "indentation"),
            ("env: *nope\n", "anchor"),
        ] {
            let e = parse(yaml, 1).unwrap_err();
            assert!(e.hint.contains(hint), "{yaml}: {e:?}");
            assert!(
                !e.message.contains("at line") && !e.message.contains("Options"),
                "{yaml}: {e:?}"
            );
            assert!(e.line.is_some() && e.column.is_some(), "{yaml}: {e:?}");
        }

        // The scanner's common complaints, said in the user's terms, each
        // with the hint that fits it.
        for (yaml, message, hint) in [
            (
                "env:\n\tA: b\n",
                "a tab is used where YAML needs spaces",
                "tabs",
            ),
            (
                "env:\n  A: b\n B: c\n",
                "this line does not line up with the keys of the mapping above it",
                "indentation",
            ),
            (
                "env:\n  - A\n  B: 1\n",
                "this line does not line up with the items (`- …`) of the list above it",
                "indentation",
            ),
            (
                "image: \"C:\\qdir\"\n",
                "a `\\` in a double-quoted value starts an escape YAML does not know",
                "single quotes",
            ),
            (
                "image: x\n@bad: 1\n",
                "a value or key cannot start with `@` unless it is quoted",
                "quote the value",
            ),
            (
                "env: {A: 1}}\n",
                "a closing `]` or `}` closes nothing",
                "quote the value",
            ),
        ] {
            let e = parse(yaml, 1).unwrap_err();
            assert_eq!(e.message, message, "{yaml}");
            assert!(e.syntax, "{yaml}");
            assert!(e.hint.contains(hint), "{yaml}: {e:?}");
        }
    }

    #[test]
    fn alias_bomb_is_refused_fast() {
        let mut y = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..12 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            y.push_str(&format!(
                "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let start = std::time::Instant::now();
        assert!(parse(&y, 1).is_err());
        assert!(start.elapsed().as_secs() < 1);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let y = format!("a: {}1{}\n", "[".repeat(200), "]".repeat(200));
        assert!(parse(&y, 1).is_err());
        let mut block = String::new();
        for i in 0..100 {
            block.push_str(&" ".repeat(i * 2));
            block.push_str(&format!("k{i}:\n"));
        }
        assert!(parse(&block, 1).is_err());
    }
}
