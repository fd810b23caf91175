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
    if value.iter().any(|b| b"()[]{}<>\\".contains(b)) || dollar_reference(value) {
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

/// True when a `$` starts a reference rather than being one more symbol of
/// a generated password (`Xk9mP2$vL8qR4nT7wZ`, which generators produce
/// and people paste into config files):
/// - `${...}` and `$(...)` (their brackets alone make a value code, too);
/// - `$NAME` where a shell, PHP, Perl or a template reads a variable: at the
///   start of the value or after a byte that cannot belong to a name
///   (`$HOME/x`, `pre-$USER`);
/// - `$NAME` in the upper-case shape of an environment variable anywhere
///   (`abc$DB_PASSWORD`).
///
/// A lower- or mixed-case run glued to the characters before the `$` is
/// not a reference a person wrote.
fn dollar_reference(value: &[u8]) -> bool {
    value.iter().enumerate().any(|(i, &b)| {
        if b != b'$' {
            return false;
        }
        let rest = value.get(i + 1..).unwrap_or_default();
        match rest.first() {
            Some(b'{' | b'(') => true,
            Some(&c) if c.is_ascii_alphabetic() || c == b'_' => {
                let after_boundary = i == 0 || !value[i - 1].is_ascii_alphanumeric();
                let name_len = rest
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
                let name = &rest[..name_len];
                let env_name = name
                    .iter()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
                    && name.iter().filter(|c| c.is_ascii_uppercase()).count() >= 2;
                after_boundary || env_name
            }
            _ => false,
        }
    })
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
            // A `$` that starts a reference.
            b"$(cat/run/secret)",
            b"$password",
            b"prod-$DB_PASSWORD_2024",
            b"$HOME/.pgpass",
            b"prefix:$user",
            b"abc$DB_PASSWORD",
        ] {
            assert!(looks_like_code(c), "{}", String::from_utf8_lossy(c));
        }
        for v in [
            &b"Xq7pL2vR9sT4wY6z"[..],
            b"aB3_dE5.fG7",
            // A `$` that is one more symbol of a generated value.
            b"Xk9mP2$vL8qR4nT7wZ",
            b"Xk9mP2$9vL8qR4nT7wZ",
            b"Xk9mP2vL8qR4nT7wZ$",
            b"Xk9mP2$VL8qR4nT7wZ",
            b"Zr8#kP2$%vQ9x",
        ] {
            assert!(!looks_like_code(v), "{}", String::from_utf8_lossy(v));
        }
    }
}
