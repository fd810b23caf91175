//! `info AGENT`: what an agent is made of, without needing its secrets.

use std::fmt::Write;
use std::process::ExitCode;

use anyhow::Result;
use bottle_manifest::bottle::{EnvValue, Runtime};
use bottle_plan::{Facts, Options, StandIn};

use crate::output;
use crate::settings::Settings;

use super::plan;

pub fn run(settings: &Settings, agent: &str, bottle: Option<&str>) -> Result<ExitCode> {
    let loaded = plan::load(settings, agent, bottle)?;
    let facts = Facts {
        home: settings.user_home.clone(),
        bottle_home: settings.bottle_home.clone(),
        version: settings.version.to_string(),
        engine: None,
    };
    let plan = bottle_plan::resolve(
        &loaded.agent,
        &loaded.bottle,
        &facts,
        &Options::default(),
        // Resolves without reading any credential: `info` must work before
        // the user has exported their tokens.
        &StandIn,
    )?
    .plan;
    for w in &loaded.catalog.warnings {
        stderrln!("warning: {w}");
    }
    let a = &loaded.agent;
    let b = &loaded.bottle;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "agent    {} ({}: {})",
        a.name,
        a.source.as_str(),
        a.file.display()
    );
    let _ = writeln!(
        out,
        "bottle   {} (lineage: {})",
        b.name,
        b.lineage.join(" -> ")
    );
    let skills: Vec<String> = a
        .skills
        .iter()
        .map(|s| {
            let dir = settings.user_home.join(".claude/skills").join(&s.name);
            if dir.is_dir() {
                s.name.clone()
            } else {
                format!("{} (missing: {})", s.name, dir.display())
            }
        })
        .collect();
    let _ = writeln!(
        out,
        "skills   {}",
        if skills.is_empty() {
            "none".into()
        } else {
            skills.join(", ")
        }
    );
    let env: Vec<String> = b
        .env
        .iter()
        .map(|(name, e)| match &e.value {
            EnvValue::Literal(_) => format!("{name} (literal)"),
            EnvValue::Forward(var) => format!("{name} (from ${var})"),
            EnvValue::Prompt(_) => format!("{name} (asked at launch)"),
        })
        .collect();
    let _ = writeln!(
        out,
        "env      {}",
        if env.is_empty() {
            "none".into()
        } else {
            env.join(", ")
        }
    );
    for t in &plan.tokens {
        let target = t.host.clone().or(t.upstream.clone()).unwrap_or_default();
        let _ = writeln!(out, "token    {} from {} for {target}", t.kind, t.token_ref);
    }
    if plan.egress.allow.is_empty() {
        let _ = writeln!(out, "routes   none (default deny)");
    }
    for r in &plan.egress.allow {
        let methods = r
            .methods
            .as_ref()
            .map_or("any method".into(), |m| m.join(","));
        let paths = r.paths.as_ref().map_or("any path".into(), |p| p.join(" "));
        let auth = r
            .auth
            .as_ref()
            .map_or(String::new(), |a| format!("  auth {a}"));
        let _ = writeln!(
            out,
            "route    {}  tls {}  {methods}  {paths}{auth}",
            r.host, r.tls
        );
    }
    if let Some(ca) = &plan.egress.upstream_ca {
        let _ = writeln!(out, "ca       {ca} (upstream TLS roots; read at start)");
    }
    for r in &plan.git.repos {
        let _ = writeln!(
            out,
            "repo     {} {} ({})  push {}  protect {}",
            r.name,
            r.url,
            r.auth,
            r.push.join(","),
            r.protect.join(",")
        );
    }
    let _ = writeln!(
        out,
        "runtime  {}",
        b.runtime.unwrap_or(Runtime::Auto).as_str()
    );
    let _ = writeln!(
        out,
        "prompt   {}",
        a.prompt_first_line().unwrap_or("(none)")
    );
    output::stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}
