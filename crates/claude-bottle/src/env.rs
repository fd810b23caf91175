//! Every environment variable the CLI reads, in one place.

/// Home folder of the manifest and state; default `~/.claude-bottle`.
pub const HOME: &str = "CLAUDE_BOTTLE_HOME";
/// Agent image; a bottle's `image` wins.
pub const IMAGE: &str = "CLAUDE_BOTTLE_IMAGE";
/// Tag of the `--copy-cwd` image.
pub const DERIVED_IMAGE: &str = "CLAUDE_BOTTLE_DERIVED_IMAGE";
/// Pins the agent container's name.
pub const CONTAINER: &str = "CLAUDE_BOTTLE_CONTAINER";
/// Backend; only `docker`.
pub const BACKEND: &str = "CLAUDE_BOTTLE_BACKEND";

/// A set, non-empty variable.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
/// Tests only: a run id added as label `io.claude-bottle.test` to every
/// object the CLI creates, so parallel runs never touch each other's.
pub const TEST_LABEL: &str = "CLAUDE_BOTTLE_TEST_LABEL";
/// `io.claude-bottle.test=<run>` when tests set their run id: a label
/// filter for finding objects, and a label to add to what is created.
pub fn test_label() -> Option<(String, String)> {
    var(TEST_LABEL).map(|v| (bottle_docker::labels::TEST.to_string(), v))
}

/// [`test_label`] as a `KEY=VALUE` filter.
pub fn test_label_filter() -> Option<String> {
    test_label().map(|(k, v)| format!("{k}={v}"))
}
/// Base image for `build` (`--base-image`) and for images `start` builds.
pub const BASE_IMAGE: &str = "CLAUDE_BOTTLE_BASE_IMAGE";
/// The local terminal's type, passed to an interactive session's exec so
/// the agent draws for the terminal it really has.
pub const TERM: &str = "TERM";
