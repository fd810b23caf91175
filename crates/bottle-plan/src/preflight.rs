//! The preflight: the plan as a person reads it before saying yes.

use std::fmt::Write;

use crate::plan::Plan;

/// Render the plan for a terminal. Names only, never values.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let w = &mut out;
    let a = &plan.agent;
    let _ = writeln!(w, "agent      {} ({}: {})", a.name, a.source, a.file);
    if let Some(line) = &a.prompt_first_line {
        let _ = writeln!(w, "prompt     {}", ellipsis(line, 70));
    }
    let _ = writeln!(w, "command    {}", shown_command(&a.command));
    let _ = writeln!(
        w,
        "bottle     {} (lineage: {})",
        plan.bottle.name,
        plan.bottle.lineage.join(" -> ")
    );
    if a.skills.is_empty() {
        let _ = writeln!(w, "skills     none");
    } else {
        // Say where they come from: the folders are copied in whole.
        let _ = writeln!(
            w,
            "skills     {} (copied from ~/.claude/skills)",
            a.skills.join(", ")
        );
    }

    let _ = writeln!(w, "\nenv");
    let e = &plan.env;
    let _ = writeln!(w, "  literal          {}", list_or(&e.literal, "none"));
    let _ = writeln!(w, "  from host env    {}", list_or(&e.forwarded, "none"));
    let _ = writeln!(w, "  asked at launch  {}", list_or(&e.prompted, "none"));
    let _ = writeln!(
        w,
        "  set by the CLI   {}",
        list_or(&e.set_by_bottle, "none")
    );

    let _ = writeln!(w, "\ntokens (held by the sidecar only)");
    if plan.tokens.is_empty() {
        let _ = writeln!(w, "  none");
    }
    for t in &plan.tokens {
        let target = match (&t.route, &t.upstream, &t.host, &t.scheme) {
            (Some(route), Some(up), _, _) => format!("agent calls sidecar {route} -> {up}"),
            (_, _, Some(host), Some(scheme)) => format!("{scheme} injected for {host}"),
            _ => String::new(),
        };
        let _ = writeln!(
            w,
            "  {:<9} from {:<28} {target}",
            t.kind,
            reference(&t.token_ref)
        );
    }

    let eg = &plan.egress;
    let _ = writeln!(
        w,
        "\negress (default deny; dlp: {}, log: {})",
        eg.dlp, eg.log
    );
    if eg.allow.is_empty() {
        let _ = writeln!(
            w,
            "  no routes: the agent reaches nothing but the sidecar's own services"
        );
    }
    for r in &eg.allow {
        let methods = r
            .methods
            .as_ref()
            .map_or("any method".to_string(), |m| m.join(","));
        let paths = r
            .paths
            .as_ref()
            .map_or("any path".to_string(), |p| p.join(" "));
        let ports: Vec<String> = r.ports.iter().map(u16::to_string).collect();
        let _ = write!(w, "  {}  ports {}  tls {}", r.host, ports.join(","), r.tls);
        if r.tls == "intercept" {
            let _ = write!(w, "  {methods}  {paths}");
        }
        if let Some(auth) = &r.auth {
            let _ = write!(w, "  auth {auth}");
        }
        let _ = writeln!(w);
    }
    for (name, target) in &eg.resolve {
        let _ = writeln!(w, "  resolve {name} -> {target}");
    }
    if let Some(ca) = &eg.upstream_ca {
        let _ = writeln!(w, "  upstream CA {ca}");
    }
    if let Some(p) = &eg.upstream_proxy {
        let _ = writeln!(w, "  upstream proxy {p}");
    }

    let g = &plan.git;
    let _ = writeln!(w, "\ngit");
    let _ = writeln!(
        w,
        "  identity  {} <{}>",
        g.user.name.as_deref().unwrap_or("(unset)"),
        g.user.email.as_deref().unwrap_or("unset")
    );
    if g.repos.is_empty() {
        let _ = writeln!(w, "  repos     none");
    }
    for r in &g.repos {
        let _ = writeln!(
            w,
            "  {} {} ({}) -> {}  push {}  protect {}",
            r.name,
            r.url,
            r.auth,
            r.clone_to,
            r.push.join(","),
            list_or(&r.protect, "nothing")
        );
    }

    let res = &plan.resources;
    let _ = writeln!(
        w,
        "\nresources  memory {}, cpus {}, pids {}",
        res.memory, res.cpus, res.pids
    );
    let runtime = match (plan.runtime.as_deref(), plan.engine_runtime.as_deref()) {
        (None, _) => "unknown (engine not reached)".to_string(),
        (Some(_), None) if plan.engine_default_runtime.is_some() => format!(
            "{} (the engine's default; no gVisor)",
            plan.engine_default_runtime.as_deref().unwrap_or_default()
        ),
        (Some(r), Some(name)) if r != name => format!("{r} (registered as `{name}`)"),
        (Some(r), _) => r.to_string(),
    };
    let _ = writeln!(w, "runtime    {runtime}");
    let _ = writeln!(w, "image      {}", plan.image);
    if let Some(d) = &plan.derived_image {
        let _ = writeln!(w, "workspace  current directory copied in (image {d})");
    } else if plan.git.repos.is_empty() {
        // Said, since only git work is saved at teardown (the outbox).
        let _ = writeln!(
            w,
            "workspace  empty: no `git.repos` and no --copy-cwd (only git work is saved at teardown)"
        );
    }
    let _ = writeln!(
        w,
        "container  {} (sidecar {})",
        plan.container, plan.sidecar.container
    );
    if plan.keep {
        let _ = writeln!(w, "keep       the bottle stays up after the agent exits");
    }
    for warning in &plan.warnings {
        let _ = writeln!(w, "\nwarning: {warning}");
    }
    out
}

fn reference(token_ref: &str) -> String {
    if token_ref.starts_with("file:") {
        token_ref.to_string()
    } else {
        format!("${token_ref}")
    }
}

fn list_or(items: &[String], none: &str) -> String {
    if items.is_empty() {
        none.to_string()
    } else {
        items.join(", ")
    }
}

/// The agent's command on one line: line breaks and tabs in its words
/// (a prompt given as an argument) written out, so no word can start a
/// line of the preflight; long commands cut (the plan JSON has it whole).
fn shown_command(words: &[String]) -> String {
    let joined = words.join(" ").replace('\n', "\\n").replace('\t', "\\t");
    ellipsis(&joined, 200)
}

fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}
