//! Checks on a candidate value: Shannon entropy, character classes, and
//! whether it is a placeholder or a reference rather than a secret.

/// Shannon entropy in bits per byte.
pub(crate) fn shannon(value: &[u8]) -> f64 {
    if value.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in value {
        counts[usize::from(b)] += 1;
    }
    let len = value.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

/// How many of lower, upper, digit and other classes appear.
pub(crate) fn class_count(value: &[u8]) -> usize {
    let mut seen = [false; 4];
    for &b in value {
        let i = match b {
            b'a'..=b'z' => 0,
            b'A'..=b'Z' => 1,
            b'0'..=b'9' => 2,
            _ => 3,
        };
        seen[i] = true;
    }
    seen.iter().filter(|s| **s).count()
}

pub(crate) fn distinct(value: &[u8]) -> usize {
    let mut seen = [false; 256];
    for &b in value {
        seen[usize::from(b)] = true;
    }
    seen.iter().filter(|s| **s).count()
}

/// Words that mark a value as a stand-in written by a person, not a secret.
const PLACEHOLDER_WORDS: &[&str] = &[
    "your",
    "here",
    "placeholder",
    "changeme",
    "change_me",
    "redacted",
    "example",
    "dummy",
    "sample",
    "replace",
    "insert",
    "xxxx",
    "****",
    "....",
    "----",
    "todo",
    "secret_key_base",
    "not_a_real",
    "notreal",
    "fake",
    "test_token",
    "<",
    ">",
];

/// True for values that stand for a secret rather than being one:
/// `<your-token-here>`, `${DB_PASSWORD}`, `{{ token }}`, `%(password)s`,
/// `os.environ[...]`, `xxxxxxxx`.
pub(crate) fn is_placeholder(value: &[u8]) -> bool {
    let lower = value.to_ascii_lowercase();
    let starts = |p: &[u8]| lower.starts_with(p);
    if starts(b"$")
        || starts(b"{")
        || starts(b"<")
        || starts(b"%")
        || starts(b"[")
        || starts(b"@")
        || starts(b"&")
        || starts(b"*")
        || starts(b"!")
        || starts(b"#")
    {
        return true;
    }
    if distinct(value) < 5 {
        return true;
    }
    PLACEHOLDER_WORDS
        .iter()
        .any(|w| contains(&lower, w.as_bytes()))
}

/// True for a value that is code rather than a literal: a call, an index, an
/// attribute path, an environment lookup.
pub(crate) fn looks_like_code(value: &[u8]) -> bool {
    if value.iter().any(|b| b"()[]{}$<>\\".contains(b)) {
        return true;
    }
    const CODE_PREFIXES: &[&[u8]] = &[
        b"os.",
        b"process.",
        b"env.",
        b"self.",
        b"this.",
        b"config.",
        b"settings.",
        b"std::",
        b"ctx.",
        b"args.",
        b"opts.",
        b"options.",
        b"params.",
        b"req.",
        b"request.",
        b"secrets.",
        b"vars.",
        b"import.",
    ];
    let lower = value.to_ascii_lowercase();
    if CODE_PREFIXES.iter().any(|p| lower.starts_with(p)) {
        return true;
    }
    // `some_identifier`, `module.attr`, `SomeType::new` without digits read as
    // names in code, not as generated secrets.
    let identifier = value
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b"_.:".contains(b));
    identifier
        && (value.contains(&b'_') || value.contains(&b'.') || value.contains(&b':'))
        && !value.iter().any(u8::is_ascii_digit)
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_orders_random_above_repetitive() {
        assert!(shannon(b"aaaaaaaa") < 0.01);
        assert!((shannon(b"abcd") - 2.0).abs() < 1e-9);
        assert!(shannon(b"Xq7pL2vR9sT4wY6z") > 3.9);
    }

    #[test]
    fn placeholders_and_references() {
        for p in [
            &b"${DB_PASSWORD}"[..],
            b"<your-token-here>",
            b"{{ secrets.TOKEN }}",
            b"%(password)s",
            b"xxxxxxxxxxxx",
            b"your_api_key_here",
            b"********",
        ] {
            assert!(is_placeholder(p), "{}", String::from_utf8_lossy(p));
        }
        assert!(!is_placeholder(b"Xq7pL2vR9sT4wY6z"));
    }

    #[test]
    fn code_values() {
        for c in [
            &b"os.environ['X']"[..],
            b"getenv(\"X\")",
            b"self.password",
            b"settings.SECRET_KEY",
            b"password_hash",
        ] {
            assert!(looks_like_code(c), "{}", String::from_utf8_lossy(c));
        }
        assert!(!looks_like_code(b"Xq7pL2vR9sT4wY6z"));
        assert!(!looks_like_code(b"aB3_dE5.fG7"));
    }
}
