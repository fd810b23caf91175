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
/// Tests only: their run id, so parallel runs never touch each other's
/// objects (`CLAUDE_BOTTLE_TEST_LABEL`).
pub const TEST: &str = "io.claude-bottle.test";
