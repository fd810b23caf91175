//! `build [--base-image REF] [--agent|--sidecar]`: the images, from this
//! executable and the embedded Dockerfiles.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Result;
use bottle_docker::image::{self, BuildRequest, Executable, ImageKind};

use crate::progress::Progress;
use crate::report::EngineFailure;
use crate::settings::Settings;

pub struct BuildArgs {
    pub base_image: Option<String>,
    pub agent: bool,
    pub sidecar: bool,
}

pub fn run(settings: &Settings, args: BuildArgs) -> Result<ExitCode> {
    let kinds: Vec<ImageKind> = match (args.agent, args.sidecar) {
        (true, false) => vec![ImageKind::Agent],
        (false, true) => vec![ImageKind::Sidecar],
        _ => vec![ImageKind::Sidecar, ImageKind::Agent],
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let engine = bottle_docker::Engine::connect().await?;
        for kind in kinds {
            build_one(settings, &engine, kind, args.base_image.clone()).await?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Build one image from this executable. Used by `build` and by `start`
/// when an image is missing or stale.
pub async fn build_one(
    settings: &Settings,
    engine: &bottle_docker::Engine,
    kind: ImageKind,
    base_image: Option<String>,
) -> Result<()> {
    let exe = std::env::current_exe()?;
    let (executable, bytes) = match kind {
        ImageKind::Sidecar => Executable::load(&exe).map_err(build_failure)?,
        // The agent image does not contain the executable; its hash only
        // labels which CLI built it.
        ImageKind::Agent => {
            let sha256 = executable_sha256(settings)?;
            (
                Executable {
                    path: exe.clone(),
                    sha256,
                },
                Vec::new(),
            )
        }
    };
    let tag = kind.tag(settings.version);
    let request = BuildRequest {
        kind,
        tag: tag.clone(),
        base_image,
        version: settings.version.to_string(),
        executable,
        extra_labels: test_labels(),
    };
    let progress = Progress::start(&format!("building `{tag}`"));
    let mut on_line = |line: &str| progress.detail(line);
    image::build(engine, &request, &bytes, &mut on_line)
        .await
        .map_err(build_failure)?;
    progress.finish(&format!("built `{tag}`"));
    Ok(())
}

/// This executable's SHA-256, which images are labelled with; cached in
/// `$CLAUDE_BOTTLE_HOME/cache/` while the file stays the same.
pub(super) fn executable_sha256(settings: &Settings) -> Result<String> {
    let exe = std::env::current_exe()?;
    let cache = settings.bottle_home.join("cache").join("executable.sha256");
    Ok(image::sha256_cached(&exe, &cache)?)
}

fn build_failure(e: image::BuildError) -> anyhow::Error {
    let hint = e.hint();
    EngineFailure::new(e.to_string(), hint).into()
}

/// `CLAUDE_BOTTLE_TEST_LABEL=<run id>` adds `io.claude-bottle.test`, so test
/// runs can find and remove what they built.
fn test_labels() -> HashMap<String, String> {
    crate::env::test_label().into_iter().collect()
}
