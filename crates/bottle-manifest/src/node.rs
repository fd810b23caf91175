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
    pub message: String,
    pub line: Option<u32>,
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
    let mut node: Node = serde_saphyr::from_str_with_options(yaml, options).map_err(|e| {
        let line = e.location().map(|l| l.line()).filter(|&l| l > 0);
        YamlError {
            message: clean_message(&e.to_string()),
            line: line.map(|l| (l as u32).saturating_add(offset)),
        }
    })?;
    shift_lines(&mut node, offset);
    Ok(node)
}

/// The parser's messages may carry its own "at line N" and, for type
/// errors, the offending scalar. We report the line ourselves, and keep only
/// the first line of the message; values never reach it because the tree
/// accepts any scalar.
fn clean_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or("invalid YAML").trim();
    first.to_string()
}

fn shift_lines(node: &mut Node, offset: u32) {
    if node.line > 0 {
        node.line = node.line.saturating_add(offset);
    }
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| shift_lines(n, offset)),
        Value::Map(entries) => {
            for (k, v) in entries {
                if k.line > 0 {
                    k.line = k.line.saturating_add(offset);
                }
                shift_lines(v, offset);
            }
        }
        _ => {}
    }
}

// === impl Deserialize ===

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(d)?;
        let line = u32::try_from(spanned.referenced.line()).unwrap_or(0);
        Ok(Node {
            value: spanned.value,
            line,
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

    #[test]
    fn syntax_error_has_a_file_line() {
        let e = parse("a: 1\nb: [unclosed\n", 5).unwrap_err();
        assert!(e.line.is_some_and(|l| l >= 5), "{e:?}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert!(parse("a: 1\na: 2\n", 1).is_err());
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
