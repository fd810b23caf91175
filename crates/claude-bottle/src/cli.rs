//! The command line, as clap sees it. Nothing here does work: `main`
//! turns these into settings and hands them to `commands`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "claude-bottle",
    version,
    about = "Run AI coding agents inside bottles: a hardened container whose only exit is a \
             sidecar that enforces an egress allowlist, blocks secret exfiltration, holds the \
             credentials and gates git pushes.",
    after_help = "Manifests live in $CLAUDE_BOTTLE_HOME (default ~/.claude-bottle): bottles/<name>.md \
                  and agents/<name>.md; a project may add agents in .claude-bottle/agents/.\n\
                  Start with `claude-bottle init`, then `export CLAUDE_BOTTLE_OAUTH_TOKEN=...` (from \
                  `claude setup-token`) and `claude-bottle start <agent> --dry-run`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve an agent's plan, show the preflight, launch its bottle and attach
    #[command(
        long_about = "Resolve an agent's plan, show the preflight, launch its bottle and attach.\n\n\
                      Asks `Launch? [y/N]` (skipped by --yes) and the bottle's `?` env values, \
                      builds missing images, starts the sidecar and the agent, and attaches this \
                      terminal to the agent (or, with --prompt, runs it once). The workspace \
                      holds the bottle's declared git repos, the current folder with --copy-cwd, \
                      or nothing. When the agent exits, the bottle is torn down: its git work is \
                      saved under $CLAUDE_BOTTLE_HOME/outbox/ (files outside a git repository \
                      are not), the audit log under $CLAUDE_BOTTLE_HOME/logs/, a summary is \
                      printed, and the CLI exits with the agent's exit code."
    )]
    Start(StartArgs),
    /// Attach a new agent session to a running bottle
    #[command(
        long_about = "Attach a new agent session to a running bottle, typically one started with \
                      `start --keep`.\n\n\
                      Runs the agent's command again inside the bottle, interactively, with the \
                      bottle's env and system prompt; this terminal is the agent's until the \
                      session ends, and the bottle keeps running after it (`stop` ends it). \
                      Needs a terminal. Exits with the agent's exit code."
    )]
    Attach {
        /// The bottle's slug (see `claude-bottle list running`)
        slug: String,
    },
    /// List agents and bottles, or the bottles now running
    List {
        /// `agents`, `bottles` (default: both, with where each comes from; a broken file is
        /// shown with its error) or `running` (bottles now up, from the engine's labels)
        #[arg(value_enum)]
        what: Option<ListWhat>,
        /// `json`: one JSON document on stdout
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show an agent: bottle lineage, skills, env names, routes, git repos, runtime, prompt
    Info {
        /// The agent's name
        agent: String,
        /// Show it with this bottle instead of the agent's `bottle` (as `start --bottle`)
        #[arg(long)]
        bottle: Option<String>,
    },
    /// Show a bottle's audit events (egress decisions, DNS refusals, git pushes)
    #[command(
        after_help = "While the bottle exists the events come from its sidecar; after teardown, \
                      from the newest log kept in $CLAUDE_BOTTLE_HOME/logs/<slug>-<time>.jsonl."
    )]
    Logs {
        /// The bottle's slug (see `claude-bottle list running`)
        slug: String,
        /// Keep printing events as they come, until the sidecar stops or Ctrl-C
        #[arg(long, short)]
        follow: bool,
        /// `text`: one line per event; `json`: the raw JSON lines
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Tear a bottle down: save its outbox and audit log, print a summary, remove it
    #[command(
        after_help = "Meant for bottles started with `--keep`; `start` tears its bottle down by \
                      itself when the agent exits. New git commits and uncommitted changes go to \
                      $CLAUDE_BOTTLE_HOME/outbox/<slug>-<time>/, the audit log to \
                      $CLAUDE_BOTTLE_HOME/logs/<slug>-<time>.jsonl."
    )]
    Stop {
        /// The bottle's slug (see `claude-bottle list running`)
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        slug: Option<String>,
        /// Stop every running bottle
        #[arg(long)]
        all: bool,
    },
    /// Remove labelled containers, networks, images and state whose owner is gone
    Cleanup {
        /// Do not ask for confirmation
        #[arg(short, long)]
        yes: bool,
        /// Also remove bottles started with `--keep`, without saving their
        /// work (`stop SLUG` saves the outbox and audit log first)
        #[arg(long)]
        all: bool,
    },
    /// Build the agent and sidecar images
    Build {
        /// Base image for both Dockerfiles (also CLAUDE_BOTTLE_BASE_IMAGE)
        #[arg(long, env = "CLAUDE_BOTTLE_BASE_IMAGE")]
        base_image: Option<String>,
        /// Build only the agent image
        #[arg(long, conflicts_with = "sidecar")]
        agent: bool,
        /// Build only the sidecar image
        #[arg(long)]
        sidecar: bool,
    },
    /// Check the engine, runsc, the images and the home folder, and say how to fix what is missing
    Doctor {
        /// Launch a throw-away bottle on the engine (removed afterwards) and try to escape it;
        /// exits 1 when any check is NOT ENFORCED
        #[arg(long)]
        self_test: bool,
    },
    /// Write a commented example bottle and agent into $CLAUDE_BOTTLE_HOME (never overwrites)
    Init,
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Scan files, folders or stdin for secrets; exit 1 when anything is found
    Scan {
        /// Files or folders (recursively, skipping .git, binary files and symbolic links); `-`
        /// or nothing for stdin
        paths: Vec<PathBuf>,
        /// `text`: one finding per line; `json`: one JSON object per finding, one per line
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also look for the value of this environment variable, in any encoding (repeatable;
        /// an unset variable or a value under 8 bytes is an error, exit 2)
        #[arg(long = "known-secret-env", value_name = "VAR")]
        known_secret_env: Vec<String>,
    },
    /// Run the egress proxy alone, outside any bottle
    #[command(
        after_help = "FILE's keys (../shared/spec/sidecar.md, \"Standalone proxy\"): listen, allow \
                      (routes, as a bottle's egress.allow; host \"*\" matches any host), dlp, log, \
                      tokens (token_ref read from this process's environment), known_secret_env, \
                      ca, upstream_ca, upstream_proxy, resolve, host_addresses (this machine's own \
                      addresses, refused as private ones), audit. Relative paths are relative \
                      to FILE's folder. Prints `listening on ADDR` on stderr when ready; SIGTERM or SIGINT \
                      ends it."
    )]
    Proxy {
        /// The proxy's YAML or JSON configuration
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Listen address (overrides the config's `listen`)
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Provisioning's helper, run inside an agent image that lacks the
    /// tools provisioning's scripts use (`bottle_docker::helper`)
    #[command(hide = true, name = "agent-helper")]
    AgentHelper {
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The probe of `doctor --self-test`, run inside the throw-away agent
    #[command(hide = true, name = "self-test-probe")]
    SelfTestProbe { phase: String, spec: String },
    /// The sidecar's entrypoint inside its container; not for people
    #[command(hide = true)]
    Sidecar {
        #[command(subcommand)]
        part: Option<SidecarPart>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SidecarPart {
    /// A git hook of the gate (`pre-receive`)
    Hook { name: String },
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The agent's name
    pub agent: String,
    /// Use this bottle instead of the agent's `bottle`
    #[arg(long)]
    pub bottle: Option<String>,
    /// Copy the current directory into the bottle's workspace
    #[arg(long)]
    pub copy_cwd: bool,
    /// Stop after the preflight; nothing is created
    #[arg(long)]
    pub dry_run: bool,
    /// `json` prints the plan JSON on stdout (with --dry-run)
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Launch without asking (needed when stdin is not a terminal)
    #[arg(short, long)]
    pub yes: bool,
    /// Run the agent once, non-interactively, with this prompt (without it the session is
    /// interactive and needs a terminal)
    #[arg(long)]
    pub prompt: Option<String>,
    /// End the agent after this long (90s, 30m, 1h30m, 1d; at most a week) and exit 124, as
    /// timeout(1) does; with --keep only the agent's processes end
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Leave the bottle running after the agent exits (then `attach SLUG`, `stop SLUG`)
    #[arg(long)]
    pub keep: bool,
    /// Old, weaker mode: give the agent the real OAuth token from CLAUDE_BOTTLE_OAUTH_TOKEN
    /// (only for bottles without an `anthropic` token)
    #[arg(long)]
    pub forward_oauth_token: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListWhat {
    Agents,
    Bottles,
    Running,
}
