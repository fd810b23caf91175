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
                  Start with `claude-bottle init`, then `claude-bottle start <agent> --dry-run`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve an agent's plan, show the preflight, launch its bottle and attach
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
        #[arg(value_enum)]
        what: Option<ListWhat>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show an agent: bottle lineage, skills, env names, routes, git repos, runtime, prompt
    Info {
        /// The agent's name
        agent: String,
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
        /// Also remove bottles started with `--keep`
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
        /// Launch a throw-away bottle and try to escape it
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
        /// Files or folders (recursively, skipping .git and binary files); `-` or nothing for stdin
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also look for the value of this environment variable, in any encoding
        #[arg(long = "known-secret-env", value_name = "VAR")]
        known_secret_env: Vec<String>,
    },
    /// Run the egress proxy alone, outside any bottle
    Proxy {
        /// The proxy's YAML or JSON configuration
        #[arg(long)]
        config: PathBuf,
        /// Listen address (overrides the config's `listen`)
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// The sidecar's entrypoint inside its container; not for people
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
    /// Launch without asking
    #[arg(short, long)]
    pub yes: bool,
    /// Run the agent once, non-interactively, with this prompt (without it the session is
    /// interactive and needs a terminal)
    #[arg(long)]
    pub prompt: Option<String>,
    /// End the agent after this long (e.g. 30m)
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Leave the bottle running after the agent exits
    #[arg(long)]
    pub keep: bool,
    /// Old, weaker mode: give the agent the real OAuth token
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
