//! The labels every engine object of a bottle carries (see `cli.md`).

pub const SLUG: &str = "io.claude-bottle.slug";
pub const ROLE: &str = "io.claude-bottle.role";
pub const AGENT: &str = "io.claude-bottle.agent";
pub const OWNER: &str = "io.claude-bottle.owner";
pub const KEEP: &str = "io.claude-bottle.keep";
pub const VERSION: &str = "io.claude-bottle.version";
pub const BINARY_SHA256: &str = "io.claude-bottle.binary-sha256";
/// On the agent container: its command as a JSON array of strings (not
/// secret), so `attach` runs the same program in a new session.
pub const COMMAND: &str = "io.claude-bottle.command";
/// On the agent container: its own name; on the `--copy-cwd` image: its
/// tag. Teardown takes a container or image as the bottle's only under the
/// name the CLI gives its slug or the one this label repeats, so a name
/// the user pinned (`CLAUDE_BOTTLE_CONTAINER`, `CLAUDE_BOTTLE_DERIVED_IMAGE`)
/// is found, and a copy that inherited the labels under another name (a
/// container run from a `docker commit` of the agent) is not.
pub const NAME: &str = "io.claude-bottle.name";
/// Tests only: their run id, so parallel runs never touch each other's
/// objects (`CLAUDE_BOTTLE_TEST_LABEL`).
pub const TEST: &str = "io.claude-bottle.test";

/// Longest slug the CLI makes or accepts.
pub const MAX_SLUG: usize = 128;

/// A slug as the CLI makes them: letters, digits, `-`, `_` and `.`, not
/// starting with `.` or `-`. Slugs become file names (the state folder, the
/// outbox, the audit log), so an object whose slug label is anything else
/// (`../..` on an image from elsewhere) was not made by claude-bottle and is
/// never touched.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SLUG
        && !s.starts_with(['.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_plain_file_names() {
        for ok in ["dev", "dev-2", "my_agent.v1", "a"] {
            assert!(is_slug(ok), "{ok}");
        }
        for bad in [
            "", "..", "../..", ".hidden", "-rf", "a/b", "a\\b", "a b", "ä", "a\n",
        ] {
            assert!(!is_slug(bad), "{bad:?}");
        }
        assert!(!is_slug(&"a".repeat(MAX_SLUG + 1)));
    }
}
