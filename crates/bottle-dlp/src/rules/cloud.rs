//! Cloud providers: AWS, Google Cloud, Azure, Alibaba, Tencent,
//! DigitalOcean, Heroku.

use super::{Check, RuleDef, context, token};

pub(crate) const RULES: &[RuleDef] = &[
    token(
        "aws-access-key-id",
        &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
        r"\b(?P<s>(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})\b",
    ),
    RuleDef {
        id: "aws-secret-access-key",
        keywords: &["aws", "secret_access", "secretaccess"],
        pattern: concat!(
            r"(?P<n>(?i:[\w.-]{0,25}(?:aws|secret_?access)[\w.-]{0,25}))",
            assign!(),
            r"(?P<s>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"
        ),
        check: Check::Entropy(4.0),
        before: 30,
        after: 120,
    },
    RuleDef {
        id: "aws-session-token",
        keywords: &["session_token", "sessiontoken"],
        pattern: concat!(
            r"(?i:[\w.-]{0,25}session_?token[\w.-]{0,10})",
            assign!(),
            r"(?P<s>[A-Za-z0-9/+=]{100,})"
        ),
        check: Check::Entropy(4.0),
        before: 30,
        after: 2400,
    },
    token(
        "aws-mws-key",
        &["amzn.mws."],
        r"\b(?P<s>amzn\.mws\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b",
    ),
    token(
        "aws-bedrock-api-key",
        &["ABSK"],
        r"\b(?P<s>ABSK[A-Za-z0-9+/]{100,}={0,2})",
    ),
    RuleDef {
        before: 1,
        ..token(
            "gcp-service-account-key",
            &["private_key_id"],
            r#""private_key_id"\s*:\s*"(?P<s>[0-9a-f]{40})""#,
        )
    },
    token(
        "gcp-api-key",
        &["AIza"],
        r"\b(?P<s>AIza[\w-]{35})(?:[^\w-]|$)",
    ),
    token(
        "gcp-oauth-client-secret",
        &["GOCSPX-"],
        r"\b(?P<s>GOCSPX-[\w-]{28})(?:[^\w-]|$)",
    ),
    token(
        "google-oauth-access-token",
        &["ya29."],
        r"\b(?P<s>ya29\.[\w-]{20,})",
    ),
    RuleDef {
        before: 1,
        ..token(
            "google-oauth-refresh-token",
            &["1//0"],
            r"(?:^|[^\w/])(?P<s>1//0[\w-]{40,})",
        )
    },
    token(
        "azure-storage-account-key",
        &["accountkey"],
        r"(?i:AccountKey)\s*=\s*(?P<s>[A-Za-z0-9+/]{86}==)",
    ),
    RuleDef {
        id: "azure-sas-token",
        keywords: &["sv=20"],
        pattern: r#"\bsv=\d{4}-\d{2}-\d{2}[^\s"'<>]{0,400}?[?&]sig=(?P<s>[A-Za-z0-9%+/]{40,120})"#,
        check: Check::Entropy(3.8),
        before: 1,
        after: 600,
    },
    RuleDef {
        id: "azure-ad-client-secret",
        keywords: &["Q~"],
        pattern: r"(?:^|[^\w~.-])(?P<s>[\w~.]{3}\dQ~[\w~.-]{31,34})(?:[^\w~.-]|$)",
        check: Check::Token,
        before: 6,
        after: 40,
    },
    token(
        "azure-shared-access-key",
        &["sharedaccesskey="],
        r"(?i:SharedAccessKey)\s*=\s*(?P<s>[A-Za-z0-9+/]{42,44}=)",
    ),
    token(
        "alibaba-access-key-id",
        &["LTAI"],
        r"\b(?P<s>LTAI[A-Za-z0-9]{20})\b",
    ),
    token(
        "tencent-secret-id",
        &["AKID"],
        r"\b(?P<s>AKID[A-Za-z0-9]{32})\b",
    ),
    token(
        "digitalocean-token",
        &["dop_v1_", "doo_v1_", "dor_v1_"],
        r"\b(?P<s>do[opr]_v1_[a-f0-9]{64})\b",
    ),
    token(
        "heroku-api-key",
        &["HRKU-"],
        r"\b(?P<s>HRKU-AA[\w-]{58})(?:[^\w-]|$)",
    ),
    context(
        "heroku-api-key-legacy",
        &["heroku"],
        concat!(
            r"(?i:heroku)[\w.-]{0,20}",
            assign!(),
            r"(?P<s>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b"
        ),
        3.0,
    ),
];
