//! Names of bottles and agents: the file's stem, `^[a-z][a-z0-9-]{0,62}$`.
//! Such a name is already safe in Docker object names, labels and paths.

pub const NAME_RULE: &str = "a lowercase letter, then up to 62 lowercase letters, digits or `-`";

pub fn is_valid(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Env var names as shells accept them.
pub fn is_env_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 255
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Names of skills and git repos: they become folder names, so no `/`, no
/// leading dot, nothing a shell or path would treat specially.
pub fn is_plain_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid("dev"));
        assert!(is_valid("a-1"));
        assert!(is_valid(&format!("a{}", "b".repeat(62))));
        assert!(!is_valid(&format!("a{}", "b".repeat(63))));
        for bad in ["", "Dev", "1dev", "-dev", "dev_x", "dev.x", "dév"] {
            assert!(!is_valid(bad), "{bad}");
        }
        assert!(is_env_name("NPM_TOKEN") && is_env_name("_x") && !is_env_name("1A"));
        assert!(!is_env_name("A-B") && !is_env_name(""));
        assert!(is_plain_name("app.js") && !is_plain_name("../x") && !is_plain_name(".git"));
        assert!(!is_plain_name("a/b") && !is_plain_name("a..b"));
    }
}
