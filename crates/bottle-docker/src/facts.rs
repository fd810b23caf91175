//! Read-only questions the plan asks: which names and slugs are taken, and
//! whether gVisor is there. Nothing is created.

use std::collections::{BTreeSet, HashMap};

use bollard::models::SystemInfo;
use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions};
use bottle_plan::EngineFacts;

use crate::engine::{CONNECT_TIMEOUT, Engine, EngineError, api, container_name};
use crate::labels;

/// Ask the engine for the plan's facts. Leftovers are judged among the
/// objects carrying `scope` (`KEY=VALUE`) when it is given, as tests do
/// with their run label.
pub async fn engine_facts(
    engine: &Engine,
    scope: Option<&str>,
) -> Result<EngineFacts, EngineError> {
    let d = &engine.docker;
    let work = async {
        // Three independent questions, asked at once (every start waits
        // for them before it creates anything).
        let (info, containers, networks) = tokio::try_join!(
            async { d.info().await.map_err(api("info")) },
            async {
                d.list_containers(Some(ListContainersOptions {
                    all: true,
                    ..Default::default()
                }))
                .await
                .map_err(api("list containers"))
            },
            async {
                d.list_networks(None::<ListNetworksOptions>)
                    .await
                    .map_err(api("list networks"))
            },
        )?;
        let mut facts = EngineFacts {
            gvisor_runtime: gvisor_runtime(&info),
            default_runtime: info.default_runtime.clone(),
            seccomp: seccomp_by_default(&info),
            ..Default::default()
        };
        let mut owners = Owners::default();
        for c in containers {
            for n in c.names.unwrap_or_default() {
                facts
                    .containers
                    .insert(n.trim_start_matches('/').to_string());
            }
            collect_slug(c.labels.as_ref(), &mut facts.slugs);
            owners.add(c.labels.as_ref(), scope);
        }
        for n in networks {
            if let Some(name) = n.name {
                facts.networks.insert(name);
            }
            collect_slug(n.labels.as_ref(), &mut facts.slugs);
            owners.add(n.labels.as_ref(), scope);
        }
        facts.leftovers = owners.dead();
        Ok(facts)
    };
    tokio::time::timeout(CONNECT_TIMEOUT * 3, work)
        .await
        .map_err(|_| EngineError::Timeout(CONNECT_TIMEOUT * 3))?
}

/// Per slug: whether any object has a live owner or says `keep`.
#[derive(Default)]
struct Owners(std::collections::BTreeMap<String, (bool, bool)>);

impl Owners {
    fn add(&mut self, l: Option<&HashMap<String, String>>, scope: Option<&str>) {
        let Some(l) = l else { return };
        let Some(slug) = l.get(labels::SLUG) else {
            return;
        };
        if let Some((k, v)) = scope.and_then(|s| s.split_once('='))
            && l.get(k).map(String::as_str) != Some(v)
        {
            return;
        }
        let alive = l
            .get(labels::OWNER)
            .is_some_and(|o| !o.is_empty() && crate::owner::is_alive(o));
        let keep = l.get(labels::KEEP).is_some_and(|k| k == "true");
        let e = self.0.entry(slug.clone()).or_default();
        e.0 |= alive;
        e.1 |= keep;
    }

    fn dead(self) -> BTreeSet<String> {
        self.0
            .into_iter()
            .filter(|(_, (alive, keep))| !alive && !keep)
            .map(|(slug, _)| slug)
            .collect()
    }
}

fn collect_slug(l: Option<&HashMap<String, String>>, slugs: &mut BTreeSet<String>) {
    if let Some(slug) = l.and_then(|l| l.get(labels::SLUG)) {
        slugs.insert(slug.clone());
    }
}

/// Whether the engine's `SecurityOptions` list a seccomp profile other than
/// `unconfined` (`name=seccomp,profile=default`; a bare `seccomp` from
/// engines before 1.13); `None` when the engine lists no options at all.
pub fn seccomp_by_default(info: &SystemInfo) -> Option<bool> {
    let opts = info.security_options.as_ref()?;
    Some(opts.iter().any(|o| {
        let fields: Vec<&str> = o.split(',').collect();
        (fields.contains(&"name=seccomp") || fields.contains(&"seccomp"))
            && !fields.contains(&"profile=unconfined")
    }))
}

/// The name gVisor is registered under: a runtime named `runsc`, or else
/// one whose program is `runsc` under another name (the first by name, so
/// the answer does not depend on the map's order).
pub fn gvisor_runtime(info: &SystemInfo) -> Option<String> {
    let rts = info.runtimes.as_ref()?;
    if rts.contains_key("runsc") {
        return Some("runsc".to_string());
    }
    let mut named: Vec<&String> = rts
        .iter()
        .filter(|(_, rt)| {
            rt.path
                .as_deref()
                .is_some_and(|p| p.rsplit('/').next() == Some("runsc"))
        })
        .map(|(name, _)| name)
        .collect();
    named.sort();
    named.first().map(|n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(json: &str) -> SystemInfo {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn runsc_detection_on_recorded_answers() {
        let name = |json: &str| gvisor_runtime(&info(json));
        assert_eq!(
            name(include_str!("../tests/data/info-runc-20.10.json")),
            None
        );
        assert_eq!(
            name(include_str!("../tests/data/info-runsc.json")).as_deref(),
            Some("runsc")
        );
        assert_eq!(
            name(r#"{"Runtimes": {"gvisor": {"path": "/usr/local/bin/runsc"}}}"#).as_deref(),
            Some("gvisor")
        );
        assert_eq!(name("{}"), None);
    }

    #[test]
    fn seccomp_on_recorded_answers() {
        let on = |json: &str| seccomp_by_default(&info(json));
        assert_eq!(
            on(r#"{"SecurityOptions": ["name=apparmor", "name=seccomp,profile=default"]}"#),
            Some(true)
        );
        assert_eq!(on(r#"{"SecurityOptions": ["seccomp"]}"#), Some(true));
        assert_eq!(
            on(r#"{"SecurityOptions": ["name=seccomp,profile=unconfined"]}"#),
            Some(false)
        );
        assert_eq!(on(r#"{"SecurityOptions": ["name=apparmor"]}"#), Some(false));
        assert_eq!(on("{}"), None);
    }
}

/// One running bottle, from its agent container's labels.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunningBottle {
    pub slug: String,
    pub agent: String,
    pub container: String,
    pub state: String,
    pub keep: bool,
}

/// Bottles whose agent container exists, by label.
pub async fn running(engine: &Engine) -> Result<Vec<RunningBottle>, EngineError> {
    let containers = engine
        .labelled_containers(vec![format!("{}=agent", labels::ROLE)])
        .await?;
    let mut out: Vec<RunningBottle> = containers
        .into_iter()
        .map(|c| {
            let container = container_name(&c);
            let l = c.labels.unwrap_or_default();
            let get = |k: &str| l.get(k).cloned().unwrap_or_default();
            RunningBottle {
                slug: get(labels::SLUG),
                agent: get(labels::AGENT),
                container,
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                keep: l.get(labels::KEEP).is_some_and(|k| k == "true"),
            }
        })
        .collect();
    out.sort_by(|a, b| a.slug.cmp(&b.slug));
    Ok(out)
}
