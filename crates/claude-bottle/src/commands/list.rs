//! `list [agents|bottles|running]`.

use std::fmt::Write;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use crate::catalog::Catalog;
use crate::cli::{Format, ListWhat};
use crate::output;
use crate::settings::Settings;

pub fn run(settings: &Settings, what: Option<ListWhat>, format: Format) -> Result<ExitCode> {
    if what == Some(ListWhat::Running) {
        return running(format);
    }
    let catalog = Catalog::scan(&settings.bottle_home, &settings.cwd, &settings.user_home);
    let show_agents = what != Some(ListWhat::Bottles);
    let show_bottles = what != Some(ListWhat::Agents);

    let mut agents = Vec::new();
    if show_agents {
        for e in catalog.agents.values() {
            let row = match catalog.load_agent(&e.name) {
                Ok(a) => json!({"name": e.name, "source": e.source.as_str(), "file": e.path,
                    "bottle": a.bottle, "prompt_first_line": a.prompt_first_line(), "broken": null}),
                Err(err) => json!({"name": e.name, "source": e.source.as_str(), "file": e.path,
                    "bottle": null, "prompt_first_line": null, "broken": err.to_string()}),
            };
            agents.push(row);
        }
    }
    let mut bottles = Vec::new();
    if show_bottles {
        for e in catalog.bottles.values() {
            let row = match bottle_manifest::merge(&e.name, |n| catalog.load_bottle(n)) {
                Ok(m) => json!({"name": e.name, "source": "home", "file": e.path,
                    "lineage": m.lineage, "broken": null}),
                Err(err) => json!({"name": e.name, "source": "home", "file": e.path,
                    "lineage": null, "broken": err.to_string()}),
            };
            bottles.push(row);
        }
    }

    if format == Format::Json {
        let mut doc = serde_json::Map::new();
        if show_agents {
            doc.insert("agents".into(), agents.into());
        }
        if show_bottles {
            doc.insert("bottles".into(), bottles.into());
        }
        doc.insert("warnings".into(), catalog.warnings.clone().into());
        let json = serde_json::Value::Object(doc).to_string();
        output::stdout(&format!("{}\n", output::json_document(&json)))?;
        return Ok(ExitCode::SUCCESS);
    }
    for w in &catalog.warnings {
        stderrln!("warning: {w}");
    }
    let mut out = String::new();
    if show_agents {
        let _ = writeln!(out, "agents");
        if agents.is_empty() {
            let _ = writeln!(out, "  (none; `claude-bottle init` writes an example)");
        }
        for a in &agents {
            let name = a["name"].as_str().unwrap_or("");
            let source = a["source"].as_str().unwrap_or("");
            match a["broken"].as_str() {
                Some(err) => {
                    let err = crate::output::printable_field(err);
                    let _ = writeln!(out, "  {name:<20} {source:<8} broken: {err}");
                }
                None => {
                    let bottle = a["bottle"]
                        .as_str()
                        .map_or("(no bottle)".to_string(), |b| format!("bottle {b}"));
                    let prompt = a["prompt_first_line"].as_str().unwrap_or("");
                    let _ = writeln!(out, "  {name:<20} {source:<8} {bottle:<20} {prompt}");
                }
            }
        }
    }
    if show_bottles {
        if show_agents {
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "bottles");
        if bottles.is_empty() {
            let _ = writeln!(out, "  (none; `claude-bottle init` writes an example)");
        }
        for b in &bottles {
            let name = b["name"].as_str().unwrap_or("");
            match b["broken"].as_str() {
                Some(err) => {
                    let _ = writeln!(out, "  {name:<20} home     broken: {err}");
                }
                None => {
                    let lineage: Vec<&str> = b["lineage"]
                        .as_array()
                        .map(|l| l.iter().filter_map(|x| x.as_str()).collect())
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "  {name:<20} home     lineage {}",
                        lineage.join(" -> ")
                    );
                }
            }
        }
    }
    output::stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn running(format: Format) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let bottles = rt.block_on(async {
        let engine = bottle_docker::Engine::connect().await?;
        bottle_docker::running(&engine).await
    })?;
    if format == Format::Json {
        let json = serde_json::to_string(&bottles)?;
        output::stdout(&format!("{}\n", output::json_document(&json)))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    if bottles.is_empty() {
        let _ = writeln!(out, "no bottles are running");
    }
    for b in &bottles {
        let keep = if b.keep { " (kept)" } else { "" };
        let _ = writeln!(
            out,
            "{:<24} agent {:<20} {:<32} {}{keep}",
            b.slug, b.agent, b.container, b.state
        );
    }
    output::stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}
