//! Package registries and build services: npm, PyPI, crates.io, RubyGems,
//! Docker Hub, NuGet, JFrog, Clojars, Terraform Cloud, Pulumi, SonarQube.

use super::{Check, RuleDef, token};

pub(crate) const RULES: &[RuleDef] = &[
    token("npm-token", &["npm_"], r"\b(?P<s>npm_[A-Za-z0-9]{36})\b"),
    RuleDef {
        check: Check::Entropy(3.5),
        ..token(
            "npmrc-auth-token",
            &["_authtoken"],
            r#"(?i:_authToken)\s*=\s*["']?(?P<s>[\w.~+/=-]{20,200})"#,
        )
    },
    token(
        "pypi-token",
        &["pypi-AgE"],
        r"\b(?P<s>pypi-AgE[\w-]{50,})(?:[^\w-]|$)",
    ),
    token(
        "crates-io-token",
        &["cio"],
        r"\b(?P<s>cio[A-Za-z0-9]{32})\b",
    ),
    token(
        "rubygems-api-key",
        &["rubygems_"],
        r"\b(?P<s>rubygems_[0-9a-f]{48})\b",
    ),
    token(
        "dockerhub-pat",
        &["dckr_pat_"],
        r"\b(?P<s>dckr_pat_[\w-]{27})(?:[^\w-]|$)",
    ),
    token("nuget-api-key", &["oy2"], r"\b(?P<s>oy2[a-z0-9]{43})\b"),
    token(
        "artifactory-api-key",
        &["AKCp"],
        r"\b(?P<s>AKCp[A-Za-z0-9]{69})\b",
    ),
    token(
        "jfrog-reference-token",
        &["cmVmdGtu"],
        r"\b(?P<s>cmVmdGtuOjAxOj[A-Za-z0-9]{50,})\b",
    ),
    token(
        "clojars-api-token",
        &["CLOJARS_"],
        r"\b(?P<s>CLOJARS_[a-z0-9]{60})\b",
    ),
    RuleDef {
        before: 15,
        ..token(
            "terraform-cloud-token",
            &[".atlasv1."],
            r"\b(?P<s>[A-Za-z0-9]{14}\.atlasv1\.[\w=-]{60,70})(?:[^\w=-]|$)",
        )
    },
    token(
        "pulumi-access-token",
        &["pul-"],
        r"\b(?P<s>pul-[0-9a-f]{40})\b",
    ),
    token(
        "sonarqube-token",
        &["squ_", "sqp_", "sqa_"],
        r"\b(?P<s>sq[upa]_[0-9a-f]{40})\b",
    ),
];
