//! Infrastructure and SaaS: Vault, Doppler, Fly.io, Supabase, PlanetScale,
//! Databricks, Grafana, New Relic, Okta, Cloudflare, Notion, Linear, Postman,
//! Sentry, Tailscale, CI services, and other developer platforms.

use super::{RuleDef, context, token};

pub(crate) const RULES: &[RuleDef] = &[
    token(
        "vault-service-token",
        &["hvs."],
        r"\b(?P<s>hvs\.[\w-]{90,120})(?:[^\w-]|$)",
    ),
    token(
        "vault-batch-token",
        &["hvb."],
        r"\b(?P<s>hvb\.[\w-]{138,300})(?:[^\w-]|$)",
    ),
    context(
        "vault-legacy-token",
        &["vault"],
        concat!(
            r"(?i:vault)[\w.-]{0,20}",
            assign!(),
            r"(?P<s>s\.[A-Za-z0-9]{24})\b"
        ),
        3.5,
    ),
    token(
        "doppler-token",
        &[
            "dp.pt.",
            "dp.st.",
            "dp.sa.",
            "dp.ct.",
            "dp.scim.",
            "dp.audit.",
        ],
        r"\b(?P<s>dp\.(?:pt|st|sa|ct|scim|audit)\.(?:[a-z0-9_-]{2,35}\.)?[A-Za-z0-9]{40,44})\b",
    ),
    RuleDef {
        after: 4000,
        ..token(
            "flyio-token",
            &["fm1_", "fm2_", "fm1a_", "fm1r_"],
            r"\b(?P<s>fm[12][ar]?_[A-Za-z0-9+/]{100}[A-Za-z0-9+/]*={0,3})",
        )
    },
    token(
        "supabase-token",
        &["sbp_", "sb_secret_"],
        r"\b(?P<s>sbp_[0-9a-f]{40}|sb_secret_[\w-]{31,40})(?:[^\w-]|$)",
    ),
    token(
        "planetscale-token",
        &["pscale_"],
        r"\b(?P<s>pscale_(?:tkn|pw|oauth)_[\w=.-]{32,64})(?:[^\w=.-]|$)",
    ),
    token(
        "databricks-token",
        &["dapi"],
        r"\b(?P<s>dapi[0-9a-f]{32}(?:-\d)?)\b",
    ),
    token(
        "grafana-cloud-token",
        &["glc_"],
        r"\b(?P<s>glc_[A-Za-z0-9+/]{32,400}={0,2})(?:[^A-Za-z0-9+/=]|$)",
    ),
    token(
        "grafana-service-account-token",
        &["glsa_"],
        r"\b(?P<s>glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8})\b",
    ),
    token(
        "newrelic-user-key",
        &["NRAK-"],
        r"\b(?P<s>NRAK-[A-Z0-9]{27})\b",
    ),
    token(
        "newrelic-insert-key",
        &["NRII-"],
        r"\b(?P<s>NRII-[\w-]{32})(?:[^\w-]|$)",
    ),
    RuleDef {
        before: 36,
        ..token(
            "newrelic-license-key",
            &["NRAL"],
            r"\b(?P<s>[0-9a-f]{36}NRAL)\b",
        )
    },
    context(
        "okta-api-token",
        &["okta"],
        concat!(
            r"(?i:okta)[\w.-]{0,20}",
            assign!(),
            r"(?P<s>00[\w-]{40})(?:[^\w-]|$)"
        ),
        3.8,
    ),
    context(
        "cloudflare-api-token",
        &["cloudflare", "cf_api", "cf_token"],
        concat!(
            r"(?i:cloudflare|cf_api|cf_token)[\w.-]{0,20}",
            assign!(),
            r"(?P<s>[\w-]{40})(?:[^\w-]|$)"
        ),
        3.8,
    ),
    token(
        "cloudflare-origin-ca-key",
        &["v1.0-"],
        r"\b(?P<s>v1\.0-[0-9a-f]{24}-[0-9a-f]{146})\b",
    ),
    token(
        "notion-token",
        &["ntn_", "secret_"],
        r"\b(?P<s>ntn_\d{11}[A-Za-z0-9]{35}|secret_[A-Za-z0-9]{43})\b",
    ),
    token(
        "linear-api-key",
        &["lin_api_", "lin_oauth_"],
        r"\b(?P<s>lin_(?:api_[A-Za-z0-9]{40}|oauth_[0-9a-f]{64}))\b",
    ),
    token(
        "postman-api-key",
        &["PMAK-"],
        r"\b(?P<s>PMAK-[0-9a-f]{24}-[0-9a-f]{34})\b",
    ),
    token(
        "sentry-token",
        &["sntrys_", "sntryu_"],
        r"\b(?P<s>sntrys_eyJ[A-Za-z0-9+/=_-]{50,}|sntryu_[0-9a-f]{64})",
    ),
    token(
        "tailscale-key",
        &["tskey-"],
        r"\b(?P<s>tskey-(?:api|auth|client|scim|webhook)-[A-Za-z0-9]{10,}-[A-Za-z0-9]{20,})\b",
    ),
    token(
        "circleci-token",
        &["CCIPAT_"],
        r"\b(?P<s>CCIPAT_[A-Za-z0-9]{22}_[0-9a-f]{40})\b",
    ),
    token(
        "buildkite-token",
        &["bkua_"],
        r"\b(?P<s>bkua_[0-9a-f]{40})\b",
    ),
    token(
        "contentful-token",
        &["CFPAT-"],
        r"\b(?P<s>CFPAT-[\w-]{43})(?:[^\w-]|$)",
    ),
    RuleDef {
        after: 4000,
        ..token(
            "onepassword-service-account-token",
            &["ops_eyJ"],
            r"\b(?P<s>ops_eyJ[A-Za-z0-9+/=_-]{250,})",
        )
    },
    context(
        "datadog-api-key",
        &["datadog", "dd_api_key", "dd_app_key", "dd-api-key"],
        concat!(
            r"(?i:datadog|dd_api_key|dd_app_key|dd-api-key)[\w.-]{0,20}",
            assign!(),
            r"(?P<s>[0-9a-f]{32}(?:[0-9a-f]{8})?)\b"
        ),
        3.2,
    ),
    token(
        "mapbox-secret-token",
        &["sk.eyJ"],
        r"\b(?P<s>sk\.eyJ[\w-]{50,}\.[\w-]{20,})",
    ),
    token(
        "dropbox-token",
        &["sl.B", "sl.u", "sl.A"],
        r"\b(?P<s>sl\.[A-Za-z0-9_-]{130,})",
    ),
    token(
        "easypost-api-key",
        &["EZAK", "EZTK"],
        r"\b(?P<s>EZ[AT]K[0-9a-zA-Z]{54})\b",
    ),
    token(
        "prefect-api-key",
        &["pnu_"],
        r"\b(?P<s>pnu_[A-Za-z0-9]{36})\b",
    ),
    token(
        "render-api-key",
        &["rnd_"],
        r"\b(?P<s>rnd_[A-Za-z0-9]{32})\b",
    ),
    token(
        "readme-api-key",
        &["rdme_"],
        r"\b(?P<s>rdme_[a-z0-9]{70})\b",
    ),
    token(
        "shippo-api-token",
        &["shippo_"],
        r"\b(?P<s>shippo_(?:live|test)_[0-9a-f]{40})\b",
    ),
    token(
        "typeform-token",
        &["tfp_"],
        r"\b(?P<s>tfp_[\w.=-]{59})(?:[^\w.=-]|$)",
    ),
    token(
        "frameio-token",
        &["fio-u-"],
        r"\b(?P<s>fio-u-[\w=-]{64})(?:[^\w=-]|$)",
    ),
    token(
        "scalingo-token",
        &["tk-us-"],
        r"\b(?P<s>tk-us-[\w-]{48})(?:[^\w-]|$)",
    ),
];
