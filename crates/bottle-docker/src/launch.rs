//! Launch: networks, the sidecar (configured and ready), the hardened agent,
//! provisioning. Everything carries the bottle's labels, so teardown and
//! `cleanup` find it whatever happens here.

use std::collections::HashMap;
use std::net::IpAddr;

use bottle_plan::{Plan, Secrets, bottle_env};
use bottle_secret::Secret;

use crate::agent::{self, AgentSpec};
use crate::engine::{Engine, EngineError};
use crate::outbox::{self, StartRefs};
use crate::{labels, network, provision, sidecar};

/// A launched bottle.
#[derive(Debug, Clone)]
pub struct Launched {
    pub agent_id: String,
    pub sidecar_id: String,
    /// The sidecar's address on the internal network.
    pub sidecar_ip: String,
    /// The workspace's git refs once provisioned, before the agent runs:
    /// what the outbox compares with at teardown.
    pub start_refs: Result<StartRefs, String>,
    /// For the user, once the bottle is up.
    pub warnings: Vec<String>,
}

/// Labels every object of this bottle carries, plus its role.
pub fn labels_for(base: &HashMap<String, String>, role: &str) -> HashMap<String, String> {
    let mut l = base.clone();
    l.insert(labels::ROLE.into(), role.into());
    l
}

/// What the CLI hands over for the agent's files (see [`provision`]).
pub struct Inputs {
    /// The env file's text (`provision::env_file`).
    pub env: Secret,
    /// The agent's system prompt.
    pub prompt: String,
    /// The skills archive (`skills::archive`).
    pub skills: Option<Vec<u8>>,
    /// The addresses of the machine the engine runs on, for the sidecar's
    /// SSRF guard (`sidecar::config`); empty when the CLI cannot know them.
    pub host_addresses: Vec<IpAddr>,
}

/// The agent container's labels: the bottle's, its role, and its command
/// (for `attach`).
fn agent_labels(base: &HashMap<String, String>, command: &[String]) -> HashMap<String, String> {
    let mut l = labels_for(base, "agent");
    if let Ok(json) = serde_json::to_string(command) {
        l.insert(labels::COMMAND.into(), json);
    }
    l
}

/// Create and provision everything. On error the caller tears down by label.
pub async fn launch(
    engine: &Engine,
    plan: &Plan,
    secrets: &Secrets,
    inputs: Inputs,
    base_labels: &HashMap<String, String>,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Launched, EngineError> {
    progress("creating networks");
    tokio::try_join!(
        network::create(
            engine,
            &plan.networks[0],
            true,
            labels_for(base_labels, "network"),
        ),
        network::create(
            engine,
            &plan.networks[1],
            false,
            labels_for(base_labels, "network"),
        ),
    )?;

    progress("starting the sidecar");
    let (sidecar_id, sidecar_ip) =
        sidecar::start(engine, plan, labels_for(base_labels, "sidecar")).await?;
    let names = HashMap::from([("sidecar".to_string(), sidecar_ip.clone())]);
    // The agent container needs only the sidecar's address, so it is
    // created and started while the sidecar reads its configuration; the
    // agent's own command runs later, after provisioning, which needs the
    // CA the sidecar answers with.
    let configured = sidecar::configure(
        engine,
        &sidecar_id,
        sidecar::config(plan, secrets, &sidecar_ip, &names, &inputs.host_addresses),
    );
    let env: Vec<String> = bottle_env(plan)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let spec = AgentSpec {
        name: plan.container.clone(),
        image: plan
            .derived_image
            .clone()
            .unwrap_or_else(|| plan.image.clone()),
        network: plan.networks[0].clone(),
        dns: Some(sidecar_ip.clone()),
        env,
        labels: {
            let mut l = agent_labels(base_labels, &plan.agent.command);
            l.insert(labels::NAME.into(), plan.container.clone());
            l
        },
        memory: plan.resources.memory.clone(),
        cpus: plan.resources.cpus,
        pids: plan.resources.pids,
        runtime: plan.engine_runtime.clone(),
    };
    let agent_started = async {
        progress("starting the agent");
        agent::start(engine, &spec).await
    };
    let (ca_pem, agent_id) = tokio::try_join!(configured, agent_started)?;

    progress("provisioning");
    let intercepts = plan.egress.allow.iter().any(|r| r.intercepts());
    let files = provision::Files {
        ca_pem: intercepts.then_some(ca_pem),
        env: inputs.env,
        prompt: inputs.prompt,
        skills: inputs.skills,
    };
    // The workspace's refs as the agent will find them: taken by the
    // provisioning exec unless clones are still to come.
    let clones = if plan.copy_cwd {
        &[][..]
    } else {
        &plan.git.repos[..]
    };
    let installed = provision::install(engine, &agent_id, plan, files, clones.is_empty()).await?;
    for repo in clones {
        progress(&format!("cloning `{}` through the gate", repo.name));
        provision::clone(engine, &agent_id, repo).await?;
    }
    let start_refs = match installed.start_refs {
        Some(refs) => refs,
        None => outbox::snapshot(engine, &agent_id)
            .await
            .map_err(|e| e.to_string()),
    };
    Ok(Launched {
        agent_id,
        sidecar_id,
        sidecar_ip,
        start_refs,
        warnings: installed.warnings,
    })
}
