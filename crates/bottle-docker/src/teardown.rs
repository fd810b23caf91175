//! Removing a bottle's engine objects by label, every step attempted even
//! when an earlier one fails, failures reported together.

use std::collections::HashMap;

use bollard::query_parameters::{
    ListImagesOptions, ListNetworksOptions, RemoveContainerOptions, RemoveImageOptions,
};

use bottle_plan::names;

use crate::engine::{Engine, container_name};
use crate::labels;

/// One labelled engine object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Object {
    /// `container`, `network` or `image`.
    pub kind: &'static str,
    pub id: String,
    pub name: String,
    pub slug: String,
    pub role: String,
    pub owner: String,
    pub keep: bool,
}

/// Every object carrying `io.claude-bottle.slug`, optionally only those
/// with an extra label (tests use `io.claude-bottle.test=<run>`). Objects
/// whose slug is not one the CLI makes ([`labels::is_slug`]) are left out:
/// they are not ours, and their slug would name paths at teardown.
pub async fn find(engine: &Engine, extra_label: Option<&str>) -> Result<Vec<Object>, String> {
    let mut wanted = vec![labels::SLUG.to_string()];
    if let Some(l) = extra_label {
        wanted.push(l.to_string());
    }
    let filters = HashMap::from([("label".to_string(), wanted.clone())]);
    let d = &engine.docker;
    let mut out = Vec::new();
    let containers = engine
        .labelled_containers(wanted.clone())
        .await
        .map_err(|e| e.to_string())?;
    for c in containers {
        let name = container_name(&c);
        out.push(object(
            "container",
            c.id.unwrap_or_default(),
            name,
            c.labels.unwrap_or_default(),
        ));
    }
    let networks = d
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters.clone()),
        }))
        .await
        .map_err(|e| e.to_string())?;
    for n in networks {
        let o = object(
            "network",
            n.id.unwrap_or_default(),
            n.name.unwrap_or_default(),
            n.labels.unwrap_or_default(),
        );
        if o.name == names::internal_network(&o.slug) || o.name == names::egress_network(&o.slug) {
            out.push(o);
        }
    }
    let images = d
        .list_images(Some(ListImagesOptions {
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| e.to_string())?;
    for i in images {
        // The `--copy-cwd` image under the bottle's own tag, removed by that
        // tag (another tag the user gave the same image keeps it), and
        // untagged ones (a build cut short leaves the steps it finished,
        // the workspace copy among them). A tagged image of the user's
        // (`docker commit` of the agent, a build `FROM` the bottle's image)
        // carries the labels too, and is not ours to remove.
        // A tag the user pinned is on the image's own label.
        let tag = names::derived_image(i.labels.get(labels::SLUG).map_or("", |s| s));
        let pinned = i
            .labels
            .get(labels::NAME)
            .filter(|t| i.repo_tags.contains(t));
        let untagged = i.repo_tags.iter().all(|t| t == "<none>:<none>");
        let name = if let Some(pinned) = pinned {
            pinned.clone()
        } else if i.repo_tags.contains(&tag) {
            tag
        } else if untagged {
            i.id.clone()
        } else {
            continue;
        };
        out.push(object("image", i.id, name, i.labels));
    }
    out.retain(|o| labels::is_slug(&o.slug));
    Ok(out)
}

fn object(kind: &'static str, id: String, name: String, l: HashMap<String, String>) -> Object {
    let get = |k: &str| l.get(k).cloned().unwrap_or_default();
    Object {
        kind,
        id,
        name,
        slug: get(labels::SLUG),
        role: get(labels::ROLE),
        owner: get(labels::OWNER),
        keep: l.get(labels::KEEP).is_some_and(|v| v == "true"),
    }
}

/// Remove objects in the order of `docker.md`: agent, sidecar, networks,
/// images; objects of one step (the two networks, say) at once. Returns one
/// message per failure.
pub async fn remove(engine: &Engine, objects: &[Object]) -> Vec<String> {
    let rank = |o: &Object| match (o.kind, o.role.as_str()) {
        ("container", "agent") => 0,
        ("container", _) => 1,
        ("network", _) => 2,
        _ => 3,
    };
    let mut failures = Vec::new();
    for step in 0..=3 {
        let removals = objects
            .iter()
            .filter(|o| rank(o) == step)
            .map(|o| remove_one(engine, o));
        failures.extend(
            futures_util::future::join_all(removals)
                .await
                .into_iter()
                .flatten(),
        );
    }
    failures
}

/// Remove one object; already gone is what we wanted.
async fn remove_one(engine: &Engine, o: &Object) -> Option<String> {
    let d = &engine.docker;
    let result = match o.kind {
        "container" => d
            .remove_container(
                &o.id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| e.to_string()),
        "network" => d.remove_network(&o.id).await.map_err(|e| e.to_string()),
        _ => d
            .remove_image(
                &o.name,
                Some(RemoveImageOptions {
                    force: false,
                    ..Default::default()
                }),
                None,
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    match result {
        Err(e) if o.kind == "image" && e.contains("409") => Some(format!(
            "image `{}` is left: a container that is not the bottle's uses it ({e}); \
             remove that container, then `docker rmi {}`",
            o.name, o.name
        )),
        Err(e) if !e.contains("No such") && !e.contains("404") => {
            Some(format!("{} `{}`: {e}", o.kind, o.name))
        }
        _ => None,
    }
}
