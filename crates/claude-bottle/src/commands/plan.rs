//! From an agent name to a resolved plan: catalog, lineage, engine facts.
//! Shared by `start` and `info`.

use anyhow::Result;
use bottle_manifest::{Agent, MergedBottle};
use bottle_plan::{EngineFacts, Facts, NamedBy, Options, Resolved};

use crate::catalog::Catalog;
use crate::host::RealHost;
use crate::settings::Settings;

pub struct Loaded {
    pub catalog: Catalog,
    pub agent: Agent,
    pub bottle: MergedBottle,
}

/// Read the agent and its bottle's lineage; only those files are parsed.
pub fn load(settings: &Settings, agent: &str, bottle: Option<&str>) -> Result<Loaded> {
    let catalog = Catalog::scan(&settings.bottle_home, &settings.cwd, &settings.user_home);
    let agent = catalog.load_agent(agent)?;
    let (bottle_name, named_by) = match (bottle, &agent.bottle) {
        (Some(b), _) => (b.to_string(), NamedBy::Flag),
        (None, Some(b)) => (
            b.clone(),
            NamedBy::Agent {
                file: agent.file.clone(),
                line: agent.bottle_line,
            },
        ),
        (None, None) => {
            return Err(bottle_plan::Error::NoBottle {
                agent: agent.name.clone(),
                file: agent.file.clone(),
            }
            .into());
        }
    };
    // Checked here, where the agent and the bottles' folder are known: the
    // error points at the `bottle:` line (or `--bottle`) and the file that
    // was looked for, not at a file that does not exist.
    if !catalog.bottles.contains_key(&bottle_name) {
        return Err(bottle_plan::Error::MissingBottle {
            path: settings
                .bottle_home
                .join("bottles")
                .join(format!("{bottle_name}.md")),
            name: bottle_name,
            named_by,
        }
        .into());
    }
    let bottle = bottle_manifest::merge(&bottle_name, |n| catalog.load_bottle(n))?;
    Ok(Loaded {
        catalog,
        agent,
        bottle,
    })
}

/// The engine's answers, or why it could not be asked.
pub async fn engine_facts(
    engine: &Result<bottle_docker::Engine, bottle_docker::EngineError>,
) -> Result<EngineFacts, String> {
    facts_of(engine.as_ref().map_err(|e| e.to_string())?).await
}

/// The facts of a reached engine (only this test run's leftovers when the
/// test label is set).
pub async fn facts_of(engine: &bottle_docker::Engine) -> Result<EngineFacts, String> {
    let scope = crate::env::test_label_filter();
    bottle_docker::engine_facts(engine, scope.as_deref())
        .await
        .map_err(|e| e.to_string())
}

pub fn resolve(
    settings: &Settings,
    loaded: &Loaded,
    engine: Option<EngineFacts>,
    opts: &Options,
) -> Result<Resolved> {
    let facts = Facts {
        home: settings.user_home.clone(),
        bottle_home: settings.bottle_home.clone(),
        version: settings.version.to_string(),
        engine,
    };
    let mut r = bottle_plan::resolve(&loaded.agent, &loaded.bottle, &facts, opts, &RealHost)?;
    r.plan
        .warnings
        .extend(loaded.catalog.warnings.iter().cloned());
    Ok(r)
}
