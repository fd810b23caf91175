//! The front-matter splitter and the manifest readers on arbitrary bytes:
//! they must never panic, and must answer quickly whatever the input.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file = Path::new("/fuzz/bottles/x.md");
    let Ok(text) = bottle_manifest::decode(file, data) else { return };
    let _ = bottle_manifest::frontmatter::split(text);
    let home = Path::new("/home/fuzz");
    let _ = bottle_manifest::bottle::parse("x", file, home, text);
    let _ = bottle_manifest::agent::parse("x", file, bottle_manifest::Source::Project, home, text);
});
