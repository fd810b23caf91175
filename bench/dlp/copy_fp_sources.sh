#!/usr/bin/env bash
# Copies real third-party files into the DLP false-positive corpus (see
# THIRD_PARTY.md for their licences). Run from the repo root.
set -euo pipefail
out=crates/bottle-dlp/tests/corpus/clean
reg=$(ls -d ~/.cargo/registry/src/*/ | head -1)
py=$(ls -d ~/.pyenv/versions/3.12*/lib/python3.12 | head -1)
cp Cargo.lock "$out/Cargo.lock.txt"
cp "$reg/base64-0.22.1/src/engine/general_purpose/mod.rs" "$out/base64_general_purpose.rs"
cp "$reg/aho-corasick-1.1.5/src/ahocorasick.rs" "$out/ahocorasick.rs"
cp "$py/secrets.py" "$out/secrets.py"
cp "$py/smtplib.py" "$out/smtplib.py"
cp "$py/urllib/parse.py" "$out/urllib_parse.py"
cp "$py/hmac.py" "$out/hmac.py"
cp "$(ls ~/.rustup/toolchains/*/share/doc/rust/html/rustdoc/elasticlunr-*.min.js | head -1)" "$out/elasticlunr.min.js"
