//! Chat, mail and payment services: Slack, Discord, Telegram, Microsoft
//! Teams, Stripe, Square, Twilio, SendGrid, Mailgun, Mailchimp, Brevo,
//! Braintree, Shopify, HubSpot, Facebook.

use super::{RuleDef, context, token};

pub(crate) const RULES: &[RuleDef] = &[
    token(
        "slack-bot-token",
        &["xoxb-"],
        r"\b(?P<s>xoxb-\d{10,13}-\d{10,13}-[A-Za-z0-9]{24})\b",
    ),
    token(
        "slack-user-token",
        &["xoxp-", "xoxe-"],
        r"\b(?P<s>xox[pe](?:-\d{10,13}){3}-[A-Za-z0-9]{28,34})\b",
    ),
    token(
        "slack-app-token",
        &["xapp-"],
        r"\b(?P<s>xapp-\d-[A-Z0-9]{9,12}-\d{10,14}-[a-f0-9]{64})\b",
    ),
    token(
        "slack-config-token",
        &["xoxe.xox", "xoxe-"],
        r"\b(?P<s>xoxe(?:\.xox[bp])?-\d-[A-Z0-9]{140,170})\b",
    ),
    token(
        "slack-legacy-token",
        &["xoxa-", "xoxo-", "xoxs-", "xoxr-"],
        r"\b(?P<s>xox[aosr]-(?:\d+-)+[A-Za-z0-9]{10,64})\b",
    ),
    token(
        "slack-webhook-url",
        &["hooks.slack.com"],
        r"(?P<s>hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{43,56})",
    ),
    context(
        "discord-bot-token",
        &["discord", "bot_token"],
        concat!(
            r"(?i:discord|bot_token)[\w.-]{0,20}",
            assign!(),
            r"(?P<s>[MNO][\w-]{23,25}\.[\w-]{6}\.[\w-]{27,38})(?:[^\w-]|$)"
        ),
        4.0,
    ),
    RuleDef {
        before: 20,
        ..token(
            "discord-webhook-url",
            &["/api/webhooks/"],
            r"(?P<s>discord(?:app)?\.com/api/webhooks/\d{17,20}/[\w-]{60,68})",
        )
    },
    RuleDef {
        before: 11,
        ..token(
            "telegram-bot-token",
            &[":AA"],
            r"(?:^|[^\d])(?P<s>\d{8,10}:AA[\w-]{33})(?:[^\w-]|$)",
        )
    },
    RuleDef {
        before: 60,
        ..token(
            "microsoft-teams-webhook-url",
            &["webhook.office.com/webhookb2"],
            r"(?P<s>[\w-]+\.webhook\.office\.com/webhookb2/[\w@-]{36,80}/IncomingWebhook/[0-9a-f]{32}/[\w-]{36})",
        )
    },
    token(
        "stripe-secret-key",
        &["sk_live_", "sk_test_", "rk_live_", "rk_test_"],
        r"\b(?P<s>[sr]k_(?:live|test)_[A-Za-z0-9]{24,99})\b",
    ),
    token(
        "stripe-webhook-secret",
        &["whsec_"],
        r"\b(?P<s>whsec_[A-Za-z0-9+/=]{32,64})(?:[^A-Za-z0-9+/=]|$)",
    ),
    token(
        "square-access-token",
        &["EAAA", "sq0atp-"],
        r"\b(?P<s>EAAA[\w-]{60}|sq0atp-[\w-]{22})(?:[^\w-]|$)",
    ),
    token(
        "square-oauth-secret",
        &["sq0csp-"],
        r"\b(?P<s>sq0csp-[\w-]{43})(?:[^\w-]|$)",
    ),
    token("twilio-api-key", &["SK"], r"\b(?P<s>SK[0-9a-fA-F]{32})\b"),
    context(
        "twilio-auth-token",
        &["twilio"],
        concat!(
            r"(?i:twilio)[\w.-]{0,20}",
            assign!(),
            r"(?P<s>[0-9a-f]{32})\b"
        ),
        3.3,
    ),
    token(
        "sendgrid-api-key",
        &["SG."],
        r"\b(?P<s>SG\.[\w-]{22}\.[\w-]{43})(?:[^\w-]|$)",
    ),
    token("mailgun-api-key", &["key-"], r"\b(?P<s>key-[0-9a-f]{32})\b"),
    RuleDef {
        before: 33,
        ..token(
            "mailchimp-api-key",
            &["-us"],
            r"\b(?P<s>[0-9a-f]{32}-us\d{1,2})\b",
        )
    },
    token(
        "brevo-api-key",
        &["xkeysib-"],
        r"\b(?P<s>xkeysib-[0-9a-f]{64}-[A-Za-z0-9]{16})\b",
    ),
    token(
        "braintree-access-token",
        &["access_token$production$"],
        r"(?P<s>access_token\$production\$[0-9a-z]{16}\$[0-9a-f]{32})",
    ),
    token(
        "shopify-token",
        &["shpat_", "shpca_", "shppa_", "shpss_"],
        r"\b(?P<s>shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})\b",
    ),
    token(
        "hubspot-private-app-token",
        &["pat-na", "pat-eu"],
        r"\b(?P<s>pat-(?:na|eu)\d-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b",
    ),
    token(
        "facebook-access-token",
        &["EAA"],
        r"\b(?P<s>EAA[BCDGI][A-Za-z0-9]{80,250})\b",
    ),
];
