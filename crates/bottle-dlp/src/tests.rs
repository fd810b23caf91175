//! Rule-by-rule tests through `DlpTester`: every case runs on the whole
//! buffer, through the stream scanner split at every chunk boundary, wrapped
//! in each encoder (one, two and three layers), and disguised with
//! zero-width characters and full-width forms.

use crate::decode::{base64_encode, hex_encode};
use crate::{Engine, Finding};

/// Expands `{kind:len}` placeholders with deterministic random characters, so
/// no real-looking key is written in the source: `an` alphanumeric, `hex`,
/// `HEX`, `b64` (standard alphabet), `url` (`[A-Za-z0-9_-]`), `low`
/// (lower-case letters), `alpha`, `up`, `dig`, `b32` (`[A-Z2-7]`), `lan`
/// (lower-case alphanumeric), `ulan` (upper-case alphanumeric).
pub(crate) fn expand(template: &str, seed: u64) -> String {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        let spec = &rest[open + 1..close];
        let parsed = spec.split_once(':').filter(|(k, l)| {
            k.bytes().all(|b| b.is_ascii_alphanumeric()) && l.parse::<usize>().is_ok()
        });
        let Some((kind, len)) = parsed else {
            // A literal brace (JSON in a case), not a placeholder.
            out.push_str(&rest[..=open]);
            rest = &rest[open + 1..];
            continue;
        };
        let alphabet: &[u8] = match kind {
            "an" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "hex" => b"0123456789abcdef",
            "HEX" => b"0123456789ABCDEF",
            "b64" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            "url" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
            "low" => b"abcdefghijklmnopqrstuvwxyz",
            "alpha" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            "up" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "dig" => b"0123456789",
            "b32" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
            "lan" => b"abcdefghijklmnopqrstuvwxyz0123456789",
            "ulan" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
            "age" => b"QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L",
            _ => panic!("unknown template kind {kind}"),
        };
        let len: usize = len.parse().expect("template length");
        out.push_str(&rest[..open]);
        for i in 0..len {
            // Keep the last character a letter or digit so a generated token
            // does not end on `-` against a word boundary by chance.
            let pick = next() as usize % alphabet.len();
            let mut c = alphabet[pick];
            if i + 1 == len && !c.is_ascii_alphanumeric() {
                c = alphabet[0];
            }
            out.push(c as char);
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

pub(crate) use bottle_testkit::noise;

/// Runs one input through every path of the engine.
pub(crate) struct DlpTester {
    pub engine: Engine,
}

fn fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap_or(c),
            _ => c,
        })
        .collect()
}

fn zero_width(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        out.push(c);
        if i % 5 == 4 {
            out.push(['\u{200B}', '\u{2060}', '\u{202E}', '\u{FEFF}', '\u{00AD}'][i / 5 % 5]);
        }
    }
    out
}

fn percent_all(b: &[u8]) -> Vec<u8> {
    b.iter()
        .flat_map(|&c| format!("%{c:02X}").into_bytes())
        .collect()
}

impl DlpTester {
    pub fn new() -> Self {
        DlpTester {
            engine: Engine::new().expect("engine builds"),
        }
    }

    pub fn with_known(secret: &str) -> Self {
        DlpTester {
            engine: Engine::builder()
                .known_secret(secret)
                .build()
                .expect("engine builds"),
        }
    }

    fn rules_in(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.rule).collect()
    }

    /// The stream scanner, split at `at` and fed in small steps, must return
    /// the same findings as the whole-buffer scan.
    fn stream(&self, input: &[u8], at: usize, step: usize) -> Vec<Finding> {
        let mut s = self.engine.stream_with_step(step);
        let mut found = s.push(&input[..at]);
        found.extend(s.push(&input[at..]));
        found.extend(s.finish());
        found.sort_by_key(|f| (f.range.start, f.range.end, f.rule));
        found
    }

    /// The encodings and disguises every positive case must survive.
    fn variants(input: &str) -> Vec<(String, Vec<u8>)> {
        let b = input.as_bytes();
        let b64 = base64_encode(b, false, true);
        vec![
            ("base64".into(), b64.clone()),
            ("base64url".into(), base64_encode(b, true, false)),
            ("hex".into(), hex_encode(b, false)),
            ("percent".into(), percent_all(b)),
            ("percent twice".into(), percent_all(&percent_all(b))),
            ("base64 of base64".into(), base64_encode(&b64, false, true)),
            ("hex of base64".into(), hex_encode(&b64, true)),
            (
                "percent of base64 of hex".into(),
                percent_all(&base64_encode(&hex_encode(b, false), true, false)),
            ),
            ("zero-width".into(), zero_width(input).into_bytes()),
            ("full-width".into(), fullwidth(input).into_bytes()),
            (
                "base64 of zero-width".into(),
                base64_encode(zero_width(input).as_bytes(), false, true),
            ),
        ]
    }

    /// `input` must give a finding of `rule` on every path.
    pub fn positive(&self, rule: &str, input: &str) {
        let whole = self.engine.scan(input.as_bytes());
        assert!(
            Self::rules_in(&whole).contains(&rule),
            "{rule}: not found in {input:?}; got {:?}",
            Self::rules_in(&whole)
        );
        for f in &whole {
            assert!(f.range.end as usize <= input.len() && f.range.start < f.range.end);
            assert!(
                f.redacted.chars().count() <= 5,
                "{rule}: preview too long: {}",
                f.redacted
            );
        }
        // Every split point, with a step small enough to scan between pushes.
        let bytes = input.as_bytes();
        for at in 0..=bytes.len() {
            for step in [1usize, 13] {
                // Every split point with a step of 13; a step of one byte (a
                // scan after each byte) at a sample of them, to keep the cost
                // of the long cases reasonable.
                if step == 1 && at % 11 != 0 && at != bytes.len() {
                    continue;
                }
                if bytes.len() > 400 && at % 7 != 0 {
                    continue;
                }
                let streamed = self.stream(bytes, at, step);
                assert_eq!(
                    Self::rules_in(&streamed),
                    Self::rules_in(&whole),
                    "{rule}: stream split at {at} (step {step}) differs for {input:?}"
                );
                let ranges: Vec<_> = streamed.iter().map(|f| f.range.clone()).collect();
                let expected: Vec<_> = whole.iter().map(|f| f.range.clone()).collect();
                assert_eq!(ranges, expected, "{rule}: stream ranges at {at}");
            }
        }
        for (name, encoded) in Self::variants(input) {
            let found = self.engine.scan(&encoded);
            assert!(
                Self::rules_in(&found).contains(&rule),
                "{rule}: not found through {name}: {:?}; got {:?}",
                String::from_utf8_lossy(&encoded),
                Self::rules_in(&found)
            );
            for f in &found {
                assert!(
                    f.range.end as usize <= encoded.len(),
                    "{rule} {name}: range out of input"
                );
            }
        }
    }

    /// `input` must give no finding of `rule`.
    pub fn negative(&self, rule: &str, input: &str) {
        let found = self.engine.scan(input.as_bytes());
        assert!(
            !Self::rules_in(&found).contains(&rule),
            "{rule}: false positive on {input:?}: {found:?}"
        );
    }
}

/// (rule, positive template, negative template). Positive cases carry the
/// context a real file has; negatives are the near misses.
const CASES: &[(&str, &str, &str)] = &[
    (
        "aws-access-key-id",
        "aws_access_key_id = AKIA{b32:16}",
        "AKIA{b32:12} is too short",
    ),
    (
        "aws-access-key-id",
        "key: AKIAIOSFODNN7EXAMPLE",
        "xAKIA{b32:16}",
    ),
    ("aws-access-key-id", "ASIA{b32:16}", "asia{b32:16}"),
    (
        "aws-secret-access-key",
        "aws_secret_access_key = {b64:40}",
        "aws_region = eu-west-1",
    ),
    (
        "aws-secret-access-key",
        "\"SecretAccessKey\": \"{b64:40}\"",
        "aws_secret_access_key = ${AWS_SECRET}",
    ),
    (
        "aws-session-token",
        "aws_session_token = {b64:160}",
        "aws_session_token = short{an:20}",
    ),
    (
        "aws-mws-key",
        "amzn.mws.{hex:8}-{hex:4}-{hex:4}-{hex:4}-{hex:12}",
        "amzn.mws.{hex:8}",
    ),
    (
        "aws-bedrock-api-key",
        "AWS_BEARER_TOKEN_BEDROCK=ABSK{b64:120}",
        "ABSK{b64:20}",
    ),
    (
        "gcp-service-account-key",
        "{\"type\": \"service_account\", \"private_key_id\": \"{hex:40}\"}",
        "\"private_key_id\": \"{hex:20}\"",
    ),
    ("gcp-api-key", "GOOGLE_API_KEY=AIza{url:35}", "AIza{url:20}"),
    (
        "gcp-oauth-client-secret",
        "client_secret: GOCSPX-{url:28}",
        "GOCSPX-{url:10}",
    ),
    (
        "google-oauth-access-token",
        "Authorization: Bearer ya29.{url:120}",
        "ya29.short",
    ),
    (
        "google-oauth-refresh-token",
        "refresh_token=1//0{url:60}",
        "x = 1//0 + 1",
    ),
    (
        "azure-storage-account-key",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={b64:86}==;EndpointSuffix=core.windows.net",
        "AccountKey=${STORAGE_KEY}",
    ),
    (
        "azure-sas-token",
        "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&ss=b&srt=o&sp=r&se=2030-01-01&spr=https&sig={b64:43}%3D",
        "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sig=abc",
    ),
    (
        "azure-ad-client-secret",
        "AZURE_CLIENT_SECRET={an:3}8Q~{url:33}x",
        "Q~ alone",
    ),
    (
        "azure-shared-access-key",
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={b64:43}=",
        "SharedAccessKeyName=RootManageSharedAccessKey",
    ),
    (
        "alibaba-access-key-id",
        "ALIBABA_KEY=LTAI{an:20}",
        "LTAI{an:10}",
    ),
    ("tencent-secret-id", "SecretId: AKID{an:32}", "AKID{an:8}"),
    (
        "digitalocean-token",
        "DIGITALOCEAN_TOKEN=dop_v1_{hex:64}",
        "dop_v1_{hex:20}",
    ),
    (
        "heroku-api-key",
        "HEROKU_API_KEY=HRKU-AA{url:58}",
        "HRKU-{url:10}",
    ),
    (
        "heroku-api-key-legacy",
        "heroku_api_key = {hex:8}-{hex:4}-{hex:4}-{hex:4}-{hex:12}",
        "request_id = {hex:8}-{hex:4}-{hex:4}-{hex:4}-{hex:12}",
    ),
    ("github-pat", "GITHUB_TOKEN=ghp_{an:36}", "ghp_{an:20}"),
    (
        "github-pat",
        "remote: https://ghp_{an:36}@github.com/o/r",
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ),
    ("github-oauth-token", "gho_{an:36}", "gho_{an:35}"),
    ("github-user-to-server-token", "ghu_{an:36}", "ghu_{an:30}"),
    (
        "github-server-to-server-token",
        "token ghs_{an:36}",
        "ghs_{an:12}",
    ),
    ("github-refresh-token", "ghr_{an:76}", "ghr_{an:20}"),
    (
        "github-fine-grained-pat",
        "github_pat_{an:22}_{an:59}",
        "github_pat_{an:22}",
    ),
    (
        "gitlab-pat",
        "PRIVATE-TOKEN: glpat-{url:20}",
        "glpat-{url:8}",
    ),
    (
        "gitlab-pipeline-trigger-token",
        "glptt-{hex:40}",
        "glptt-{hex:20}",
    ),
    (
        "gitlab-runner-token",
        "token = \"glrt-{url:20}\"",
        "glrt-{an:5}",
    ),
    ("gitlab-deploy-token", "gldt-{url:20}", "gldt-{an:6}"),
    ("gitlab-feed-token", "glft-{url:20}", "glft-{an:6}"),
    (
        "gitlab-oauth-app-secret",
        "gloas-{hex:64}",
        "gloas-{hex:30}",
    ),
    ("gitlab-agent-token", "glagent-{url:50}", "glagent-{an:20}"),
    (
        "gitlab-runner-registration-token",
        "GR1348941{url:20}",
        "GR1348941{an:5}",
    ),
    (
        "gitlab-cicd-job-token",
        "glcbt-{an:2}_{url:20}",
        "glcbt-{an:2}_{an:5}",
    ),
    (
        "bitbucket-app-password",
        "BITBUCKET_APP_PASSWORD=ATBB{an:32}",
        "ATBB{an:10}",
    ),
    (
        "bitbucket-client-secret",
        "bitbucket_client_secret: {url:64}",
        "bitbucket_client_secret: ${SECRET}",
    ),
    ("atlassian-api-token", "ATATT3{url:180}", "ATATT3{url:20}"),
    (
        "anthropic-api-key",
        "ANTHROPIC_API_KEY=sk-ant-api03-{url:93}AA",
        "sk-ant-api03-{url:20}",
    ),
    (
        "anthropic-oauth-token",
        "CLAUDE_CODE_OAUTH_TOKEN=sk-ant-oat01-{url:93}AA",
        "sk-ant-oat01-short",
    ),
    (
        "anthropic-refresh-token",
        "sk-ant-ort01-{url:93}AA",
        "sk-ant-ort01-{url:10}",
    ),
    (
        "anthropic-admin-key",
        "sk-ant-admin01-{url:93}AA",
        "sk-ant-admin01-{url:10}",
    ),
    (
        "openai-api-key",
        "OPENAI_API_KEY=sk-{an:20}T3BlbkFJ{an:20}",
        "sk-{an:20}T3BlbkFJ",
    ),
    (
        "openai-project-key",
        "OPENAI_API_KEY=sk-proj-{url:80}T3BlbkFJ{url:40}",
        "sk-proj-{an:10}",
    ),
    (
        "openai-service-account-key",
        "sk-svcacct-{url:120}",
        "sk-svcacct-{an:10}",
    ),
    ("openai-admin-key", "sk-admin-{url:120}", "sk-admin-panel"),
    (
        "huggingface-token",
        "HF_TOKEN=hf_{alpha:34}",
        "hf_{alpha:20}",
    ),
    (
        "huggingface-org-token",
        "api_org_{alpha:34}",
        "api_org_{alpha:10}",
    ),
    ("groq-api-key", "GROQ_API_KEY=gsk_{an:52}", "gsk_{an:20}"),
    ("xai-api-key", "XAI_API_KEY=xai-{an:80}", "xai-{an:30}"),
    (
        "replicate-api-token",
        "REPLICATE_API_TOKEN=r8_{an:37}",
        "r8_{an:10}",
    ),
    ("perplexity-api-key", "pplx-{an:48}", "pplx-{an:10}"),
    (
        "openrouter-api-key",
        "sk-or-v1-{hex:64}",
        "sk-or-v1-{hex:20}",
    ),
    (
        "langsmith-api-key",
        "LANGSMITH_API_KEY=lsv2_pt_{hex:32}_{hex:10}",
        "lsv2_pt_{hex:10}",
    ),
    ("pinecone-api-key", "pcsk_{an:6}_{an:64}", "pcsk_{an:6}"),
    ("nvidia-api-key", "nvapi-{url:64}", "nvapi-{url:20}"),
    ("cerebras-api-key", "csk-{lan:48}", "csk-{lan:20}"),
    (
        "fireworks-api-key",
        "FIREWORKS_API_KEY=fw_{an:24}",
        "fw_{an:10}",
    ),
    (
        "cohere-api-key",
        "COHERE_API_KEY={an:40}",
        "COHERE_API_KEY=${COHERE_KEY}",
    ),
    (
        "mistral-api-key",
        "MISTRAL_API_KEY=\"{an:32}\"",
        "MISTRAL_MODEL=mistral-large-latest",
    ),
    (
        "deepseek-api-key",
        "DEEPSEEK_API_KEY=sk-{hex:32}",
        "DEEPSEEK_API_KEY=sk-{hex:10}",
    ),
    (
        "npm-token",
        "//registry.npmjs.org/:_authToken=npm_{an:36}",
        "npm_{an:10}",
    ),
    (
        "npmrc-auth-token",
        "//npm.corp.example/:_authToken={url:40}",
        "//registry.npmjs.org/:_authToken=${NPM_TOKEN}",
    ),
    (
        "pypi-token",
        "password = pypi-AgEIcHlwaS5vcmc{url:70}",
        "pypi-AgE{an:10}",
    ),
    (
        "crates-io-token",
        "CARGO_REGISTRY_TOKEN=cio{an:32}",
        "precious{an:32}",
    ),
    (
        "rubygems-api-key",
        "GEM_HOST_API_KEY: rubygems_{hex:48}",
        "rubygems_{hex:20}",
    ),
    ("dockerhub-pat", "dckr_pat_{url:27}", "dckr_pat_{url:10}"),
    ("nuget-api-key", "oy2{lan:43}", "oy2{lan:10}"),
    ("artifactory-api-key", "AKCp{an:69}", "AKCp{an:20}"),
    (
        "jfrog-reference-token",
        "cmVmdGtuOjAxOj{an:56}",
        "cmVmdGtuOjAxOj{an:10}",
    ),
    ("clojars-api-token", "CLOJARS_{lan:60}", "CLOJARS_{lan:20}"),
    (
        "terraform-cloud-token",
        "token = \"{an:14}.atlasv1.{url:67}\"",
        "{an:14}.atlasv1.{an:10}",
    ),
    (
        "pulumi-access-token",
        "PULUMI_ACCESS_TOKEN=pul-{hex:40}",
        "pul-{hex:20}",
    ),
    (
        "sonarqube-token",
        "SONAR_TOKEN=squ_{hex:40}",
        "squ_{hex:20}",
    ),
    (
        "slack-bot-token",
        "SLACK_BOT_TOKEN=xoxb-{dig:12}-{dig:13}-{an:24}",
        "xoxb-{dig:12}",
    ),
    (
        "slack-user-token",
        "xoxp-{dig:11}-{dig:11}-{dig:12}-{hex:32}",
        "xoxp-{dig:11}-{dig:11}",
    ),
    (
        "slack-app-token",
        "xapp-1-{ulan:11}-{dig:13}-{hex:64}",
        "xapp-1-{ulan:11}",
    ),
    (
        "slack-config-token",
        "xoxe.xoxp-1-{ulan:163}",
        "xoxe.xoxp-1-{ulan:20}",
    ),
    (
        "slack-legacy-token",
        "xoxs-{dig:10}-{dig:10}-{an:40}",
        "xoxs-{dig:10}",
    ),
    (
        "slack-webhook-url",
        "https://hooks.slack.com/services/T{ulan:8}/B{ulan:8}/{an:24}",
        "https://hooks.slack.com/services/",
    ),
    (
        "discord-bot-token",
        "DISCORD_BOT_TOKEN=M{an:23}.{url:6}.{url:38}",
        "discord_channel = general-chat-room",
    ),
    (
        "discord-webhook-url",
        "https://discord.com/api/webhooks/{dig:18}/{url:68}",
        "https://discord.com/api/webhooks/",
    ),
    (
        "telegram-bot-token",
        "TELEGRAM_TOKEN={dig:10}:AA{url:33}",
        "ratio 1:AA",
    ),
    (
        "microsoft-teams-webhook-url",
        "https://contoso.webhook.office.com/webhookb2/{hex:8}-{hex:4}-{hex:4}-{hex:4}-{hex:12}@{hex:8}-{hex:4}-{hex:4}-{hex:4}-{hex:12}/IncomingWebhook/{hex:32}/{hex:8}-{hex:4}-{hex:4}-{hex:4}-{hex:12}",
        "https://contoso.webhook.office.com/webhookb2/",
    ),
    (
        "stripe-secret-key",
        "STRIPE_KEY=sk_live_{an:24}",
        "pk_live_{an:24}",
    ),
    ("stripe-secret-key", "rk_test_{an:40}", "sk_live_{an:10}"),
    ("stripe-webhook-secret", "whsec_{an:32}", "whsec_{an:8}"),
    ("square-access-token", "sq0atp-{url:22}", "sq0atp-{url:8}"),
    ("square-access-token", "EAAA{url:60}", "EAAA{url:10}"),
    ("square-oauth-secret", "sq0csp-{url:43}", "sq0csp-{url:10}"),
    (
        "twilio-api-key",
        "TWILIO_API_KEY=SK{hex:32}",
        "SKIP_{hex:32}",
    ),
    (
        "twilio-auth-token",
        "TWILIO_AUTH_TOKEN={hex:32}",
        "TWILIO_AUTH_TOKEN=00000000000000000000000000000000",
    ),
    (
        "sendgrid-api-key",
        "SENDGRID_API_KEY=SG.{url:22}.{url:43}",
        "SG.{url:10}",
    ),
    (
        "mailgun-api-key",
        "MAILGUN_KEY=key-{hex:32}",
        "primary-key-{hex:8}",
    ),
    ("mailchimp-api-key", "MAILCHIMP={hex:32}-us21", "en-us"),
    (
        "brevo-api-key",
        "xkeysib-{hex:64}-{an:16}",
        "xkeysib-{hex:10}",
    ),
    (
        "braintree-access-token",
        "access_token$production${lan:16}${hex:32}",
        "access_token$production$",
    ),
    (
        "shopify-token",
        "X-Shopify-Access-Token: shpat_{hex:32}",
        "shpat_{hex:10}",
    ),
    (
        "hubspot-private-app-token",
        "pat-na1-{hex:8}-{hex:4}-{hex:4}-{hex:4}-{hex:12}",
        "pat-na1-{hex:8}",
    ),
    (
        "facebook-access-token",
        "access_token=EAAB{an:120}",
        "EAAB{an:20}",
    ),
    (
        "vault-service-token",
        "VAULT_TOKEN=hvs.{url:95}",
        "hvs.{an:10}",
    ),
    ("vault-batch-token", "hvb.{url:150}", "hvb.{an:10}"),
    (
        "vault-legacy-token",
        "VAULT_TOKEN=s.{an:24}",
        "vault_addr = https://vault.example:8200",
    ),
    (
        "doppler-token",
        "DOPPLER_TOKEN=dp.st.prd.{an:43}",
        "dp.st.{an:10}",
    ),
    ("doppler-token", "dp.pt.{an:43}", "dp.pt."),
    (
        "flyio-token",
        "FLY_API_TOKEN=FlyV1 fm2_{b64:400}",
        "fm2_{an:20}",
    ),
    (
        "supabase-token",
        "SUPABASE_ACCESS_TOKEN=sbp_{hex:40}",
        "sbp_{hex:10}",
    ),
    ("supabase-token", "sb_secret_{url:32}", "sb_secret_{an:5}"),
    (
        "planetscale-token",
        "pscale_tkn_{url:43}",
        "pscale_tkn_{an:10}",
    ),
    (
        "databricks-token",
        "DATABRICKS_TOKEN=dapi{hex:32}",
        "dapi{hex:10}",
    ),
    ("grafana-cloud-token", "glc_{b64:60}", "glc_{an:10}"),
    (
        "grafana-service-account-token",
        "glsa_{an:32}_{hex:8}",
        "glsa_{an:10}",
    ),
    (
        "newrelic-user-key",
        "NEW_RELIC_API_KEY=NRAK-{ulan:27}",
        "NRAK-{ulan:10}",
    ),
    ("newrelic-insert-key", "NRII-{url:32}", "NRII-{an:10}"),
    ("newrelic-license-key", "license_key: {hex:36}NRAL", "NRAL"),
    (
        "okta-api-token",
        "OKTA_API_TOKEN=00{url:40}",
        "okta_domain = dev-123456.okta.com",
    ),
    (
        "cloudflare-api-token",
        "CLOUDFLARE_API_TOKEN={url:40}",
        "CLOUDFLARE_ACCOUNT=${CF_ACCOUNT}",
    ),
    (
        "cloudflare-origin-ca-key",
        "v1.0-{hex:24}-{hex:146}",
        "v1.0-{hex:24}",
    ),
    (
        "notion-token",
        "NOTION_TOKEN=ntn_{dig:11}{an:35}",
        "ntn_{dig:11}",
    ),
    ("notion-token", "secret_{an:43}", "secret_{an:12}"),
    (
        "linear-api-key",
        "LINEAR_API_KEY=lin_api_{an:40}",
        "lin_api_{an:10}",
    ),
    ("postman-api-key", "PMAK-{hex:24}-{hex:34}", "PMAK-{hex:24}"),
    (
        "sentry-token",
        "SENTRY_AUTH_TOKEN=sntryu_{hex:64}",
        "sntryu_{hex:10}",
    ),
    (
        "tailscale-key",
        "TS_AUTHKEY=tskey-auth-{an:12}-{an:30}",
        "tskey-auth-{an:5}",
    ),
    (
        "circleci-token",
        "CCIPAT_{an:22}_{hex:40}",
        "CCIPAT_{an:22}",
    ),
    ("buildkite-token", "bkua_{hex:40}", "bkua_{hex:10}"),
    ("contentful-token", "CFPAT-{url:43}", "CFPAT-{url:10}"),
    (
        "onepassword-service-account-token",
        "OP_SERVICE_ACCOUNT_TOKEN=ops_eyJ{b64:300}",
        "ops_eyJ{an:10}",
    ),
    (
        "datadog-api-key",
        "DD_API_KEY={hex:32}",
        "DD_SITE=datadoghq.eu",
    ),
    (
        "mapbox-secret-token",
        "sk.eyJ{url:60}.{url:22}",
        "sk.eyJ{an:10}",
    ),
    ("dropbox-token", "sl.B{url:135}", "sl.B{an:10}"),
    ("easypost-api-key", "EZAK{an:54}", "EZAK{an:10}"),
    (
        "prefect-api-key",
        "PREFECT_API_KEY=pnu_{an:36}",
        "pnu_{an:10}",
    ),
    ("render-api-key", "rnd_{an:32}", "rnd_seed_value"),
    ("readme-api-key", "rdme_{lan:70}", "rdme_{lan:10}"),
    (
        "shippo-api-token",
        "shippo_live_{hex:40}",
        "shippo_live_{hex:10}",
    ),
    ("typeform-token", "tfp_{an:59}", "tfp_{an:10}"),
    ("frameio-token", "fio-u-{url:64}", "fio-u-{url:10}"),
    ("scalingo-token", "tk-us-{url:48}", "tk-us-{url:10}"),
    (
        "private-key",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow{b64:58}\n{b64:64}\n{b64:64}\n{b64:30}==\n-----END RSA PRIVATE KEY-----\n",
        "-----BEGIN PUBLIC KEY-----\nMIIBIj{b64:58}\n-----END PUBLIC KEY-----",
    ),
    (
        "private-key",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n{b64:64}\n-----END OPENSSH PRIVATE KEY-----",
        "if line.starts_with(\"-----BEGIN OPENSSH PRIVATE KEY-----\") {",
    ),
    (
        "private-key",
        "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,{HEX:32}\n\n{b64:64}\n-----END EC PRIVATE KEY-----",
        "-----BEGIN CERTIFICATE-----\nMIIB{b64:60}\n-----END CERTIFICATE-----",
    ),
    (
        "private-key",
        "{\"private_key\": \"-----BEGIN PRIVATE KEY-----\\nMIIEvQ{b64:58}\\n{b64:64}\\n-----END PRIVATE KEY-----\\n\"}",
        "const HEADER: &str = \"-----BEGIN PRIVATE KEY-----\";",
    ),
    (
        "private-key",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\nlQOYBF{b64:58}\n{b64:64}\n-----END PGP PRIVATE KEY BLOCK-----",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQEN{b64:60}\n-----END PGP PUBLIC KEY BLOCK-----",
    ),
    (
        "private-key",
        "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nComment: \"rsa-key\"\nP2/56w{b64:58}\n---- END SSH2 ENCRYPTED PRIVATE KEY ----",
        "---- BEGIN SSH2 PUBLIC KEY ----\nAAAAB3{b64:58}\n---- END SSH2 PUBLIC KEY ----",
    ),
    (
        "private-key",
        "-----BEGIN DSA PRIVATE KEY-----\nMIIBuw{b64:58}\n-----END DSA PRIVATE KEY-----",
        "-----BEGIN DSA PARAMETERS-----\nMIIBuw{b64:58}\n-----END DSA PARAMETERS-----",
    ),
    (
        "putty-private-key",
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: key\nPublic-Lines: 2\nAAAAC3{b64:58}\nAAAA{b64:20}\nPrivate-Lines: 1\nAAAAI{b64:40}\nPrivate-MAC: {hex:64}\n",
        "PuTTY-User-Key-File-3: ssh-ed25519\nPublic-Lines: 2",
    ),
    (
        "age-secret-key",
        "AGE-SECRET-KEY-1{age:58}",
        "AGE-SECRET-KEY-1{age:10}",
    ),
    (
        "jwt",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.{url:43}",
        "eyJ{an:20}.eyJ{an:20}.{an:20}",
    ),
    (
        "url-credentials",
        "DATABASE_URL=postgres://app:{an:16}@db.internal:5432/app",
        "DATABASE_URL=postgres://app:${DB_PASSWORD}@db:5432/app",
    ),
    (
        "url-credentials",
        "git clone https://user:{an:20}@git.example.com/r.git",
        "postgres://postgres:postgres@localhost:5432/db",
    ),
    (
        "http-basic-auth",
        "Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "Basic authentication is simple",
    ),
    (
        "http-bearer-token",
        "Authorization: Bearer {url:40}",
        "Authorization: Bearer ${TOKEN}",
    ),
    (
        "generic-password",
        "DB_PASSWORD={an:20}",
        "DB_PASSWORD=${DB_PASSWORD}",
    ),
    (
        "generic-password",
        "\"password\": \"Zr8#kP2!vQ9x{an:4}\"",
        "password = os.environ[\"DB_PASSWORD\"]",
    ),
    (
        // A `$` inside a generated password is a symbol, not a reference.
        "generic-password",
        "password=Xk9mP2$vL8qR4nT7wZ",
        "PASSWORD=prod-$DB_PASSWORD_2024",
    ),
    (
        "generic-password",
        "spring.datasource.password: {an:16}",
        "password_min_length = 12345678901",
    ),
    (
        "generic-secret",
        "client_secret = \"{url:32}\"",
        "client_secret = get_secret(\"name\")",
    ),
    (
        "generic-secret",
        "SECRET_KEY='{an:50}'",
        "SECRET_KEY = '<your-secret-key-here>'",
    ),
    (
        "generic-token",
        "api_token: {an:32}",
        "nextPageToken: \"{an:40}\"",
    ),
    (
        "generic-token",
        "AUTH_TOKEN=\"{url:40}\"",
        "token = tokenizer.encode(text)",
    ),
    (
        "generic-api-key",
        "apiKey: \"{an:32}\"",
        "apiKey: process.env.API_KEY",
    ),
    (
        "generic-api-key",
        "X_API_KEY={hex:40}",
        "api_key = settings.API_KEY",
    ),
];

#[test]
fn expand_is_deterministic_and_shaped() {
    assert_eq!(expand("a{hex:8}b", 1), expand("a{hex:8}b", 1));
    let s = expand("ghp_{an:36}", 7);
    assert_eq!(s.len(), 40);
    assert!(s[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
}

#[test]
fn every_rule_has_positive_and_negative_cases() {
    let t = DlpTester::new();
    for id in t.engine.rule_ids() {
        assert!(
            CASES.iter().any(|c| c.0 == id),
            "rule {id} has no test case"
        );
    }
}

/// Runs every case and reports all failures at once.
fn all_cases(f: impl Fn(usize, &str, &str, &str) + std::panic::RefUnwindSafe) {
    let mut failures = Vec::new();
    for (i, (rule, pos, neg)) in CASES.iter().enumerate() {
        if let Err(e) = std::panic::catch_unwind(|| f(i, rule, pos, neg)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(msg);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rule_positives_on_every_path() {
    let t = DlpTester::new();
    all_cases(|i, rule, pos, _| t.positive(rule, &expand(pos, i as u64 + 1)));
}

#[test]
fn rule_negatives() {
    let t = DlpTester::new();
    all_cases(|i, rule, _, neg| t.negative(rule, &expand(neg, i as u64 + 1000)));
}

const KNOWN: &str = "sk-ant-oat01-Known/Secret+Value_42";

#[test]
fn known_secret_in_every_form_and_layer() {
    let t = DlpTester::with_known(KNOWN);
    let s = KNOWN.as_bytes();
    let reversed: String = KNOWN.chars().rev().collect();
    let forms: Vec<(&str, Vec<u8>)> = vec![
        ("plain", s.to_vec()),
        ("reversed", reversed.into_bytes()),
        ("base64", base64_encode(s, false, true)),
        ("base64url", base64_encode(s, true, false)),
        ("hex", hex_encode(s, false)),
        ("HEX", hex_encode(s, true)),
        ("percent", crate::percent_encode(s)),
        (
            "percent twice",
            crate::percent_encode(&crate::percent_encode(s)),
        ),
        (
            "base64 in JSON",
            base64_encode(format!("{{\"t\":\"{KNOWN}\"}}").as_bytes(), false, true),
        ),
    ];
    for (name, form) in forms {
        let mut input = b"POST /upload?x=".to_vec();
        input.extend_from_slice(&form);
        input.extend_from_slice(b"&y=1 trailing text");
        let found = t.engine.scan(&input);
        let known: Vec<_> = found
            .iter()
            .filter(|f| f.rule == crate::KNOWN_SECRET_RULE)
            .collect();
        assert!(!known.is_empty(), "{name}: {found:?}");
        for f in known {
            assert_eq!(f.redacted, "****");
        }
    }
    // The shared cases of every layer and disguise.
    t.positive(crate::KNOWN_SECRET_RULE, &format!("note: {KNOWN} end"));
    t.negative(
        crate::KNOWN_SECRET_RULE,
        "sk-ant-oat01-Known/Secret+Value_43",
    );
}

/// Layers can see one secret as different spans from the same start (a
/// base64 run with and without its last quantum): the engine reports one
/// per start and rule, the longest, so redaction leaves none of the span.
#[test]
fn one_finding_per_start_and_rule_the_longest() {
    let secret = "s3cr3t-Known-Value-1234567890";
    let t = DlpTester::with_known(secret);
    let b64 = base64_encode(secret.as_bytes(), false, true);
    let hex = hex_encode(secret.as_bytes(), false);
    let twice = base64_encode(&b64, false, true);
    for form in [
        b64.clone(),
        hex,
        twice,
        [&b64[..], b":", secret.as_bytes()].concat(),
    ] {
        let mut input = b"token=".to_vec();
        input.extend_from_slice(&form);
        input.push(b'\n');
        let found = t.engine.scan(&input);
        let mut seen = std::collections::BTreeSet::new();
        for f in &found {
            assert!(seen.insert((f.range.start, f.rule)), "twice: {found:?}");
        }
        let (redacted, _) = t.engine.redact(&input);
        let text = String::from_utf8_lossy(&redacted);
        assert!(
            text.starts_with("token=[REDACTED:") && text.ends_with("]\n"),
            "{text}"
        );
        // A streamed body (what the proxy redacts) covers the same span.
        let mut stream = t.engine.stream();
        let mut streamed = Vec::new();
        for chunk in input.chunks(7) {
            streamed.extend(stream.push(chunk));
        }
        streamed.extend(stream.finish());
        let end = streamed.iter().map(|f| f.range.end).max();
        assert_eq!(end, Some(input.len() as u64 - 1), "{streamed:?}");
    }
}

#[test]
fn known_secrets_are_never_shown() {
    let engine = Engine::builder()
        .known_secret(KNOWN)
        .known_secret("another-secret-1")
        .build()
        .unwrap();
    let debug = format!("{engine:?} {:?}", Engine::builder().known_secret(KNOWN));
    assert!(!debug.contains("Known"), "{debug}");
    assert!(!debug.contains("another"), "{debug}");
    assert!(debug.contains("known_secrets: 2"), "{debug}");
    let err = Engine::builder().known_secret("short").build().unwrap_err();
    assert!(!err.to_string().contains("short"), "{err}");
    assert_eq!(err, crate::Error::KnownSecretTooShort { index: 0, len: 5 });
}

#[test]
fn findings_preview_at_most_four_chars() {
    let t = DlpTester::new();
    let token = expand("ghp_{an:36}", 3);
    let f = t.engine.scan(format!("t = {token}").as_bytes());
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].redacted, "ghp_…");
    assert_eq!(f[0].range, 4..44);
}

#[test]
fn redact_replaces_secret_and_keeps_the_rest() {
    let t = DlpTester::new();
    let token = expand("ghp_{an:36}", 9);
    let input = format!("{{\"auth\": \"{token}\", \"n\": 1}}");
    let (out, findings) = t.engine.redact(input.as_bytes());
    assert_eq!(findings.len(), 1);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"auth\": \"[REDACTED:github-pat]\", \"n\": 1}"
    );
    // An encoded secret is redacted as the whole encoded run.
    let enc = String::from_utf8(base64_encode(input.as_bytes(), false, true)).unwrap();
    let (out, _) = t.engine.redact(format!("body={enc}&x=1").as_bytes());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "body=[REDACTED:github-pat]&x=1"
    );
}

#[test]
fn scan_to_stops_when_the_sink_says_so() {
    struct First(Vec<Finding>);
    impl crate::Sink for First {
        fn finding(&mut self, f: Finding) -> bool {
            self.0.push(f);
            false
        }
    }
    let t = DlpTester::new();
    let input = expand("a ghp_{an:36} b gho_{an:36}", 4);
    let mut all = Vec::new();
    t.engine.scan_to(input.as_bytes(), &mut all);
    assert_eq!(all.len(), 2);
    let mut first = First(Vec::new());
    t.engine.scan_to(input.as_bytes(), &mut first);
    assert_eq!(first.0.len(), 1);
}

/// Values that look like secrets to a naive scanner and are not.
#[test]
fn precision_examples() {
    let t = DlpTester::new();
    let clean = [
        "id = 550e8400-e29b-41d4-a716-446655440000",
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
        "\"integrity\": \"sha512-Q7QbZrNNa+dCDJ8n6M5Y+oB9nNGs0tV5a3oXKZ0JPGx9L0b1vW0Z3uDIbPcKlcnOxwFvqMsSU6IbMwD7RrsV3w==\"",
        "golang.org/x/net v0.28.0 h1:a5Ld9LTEm9nK0YqYvZPkTMwtxO6d6mSZ6yX9DRMdwxQ=",
        "FROM debian@sha256:2171c87301e5ea528cee5c2308a4589f8f2ac819d4d434b679b7cb1dc8de6912",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host",
        "<img src=\"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\">",
        "password = os.environ[\"DB_PASSWORD\"]",
        "db_password: ${DB_PASSWORD}",
        "const token = process.env.GITHUB_TOKEN;",
        "api_key = \"<your-api-key-here>\"",
        "SECRET_KEY = get_random_secret_key()",
        "let password_hash = argon2::hash_encoded(password.as_bytes(), &salt, &config)?;",
        "self.access_token = response.json()[\"access_token\"]",
        "Le mot de passe doit contenir au moins douze caractères.",
        "パスワードを環境変数に保存してください。",
        "The token expires after one hour; refresh it with the refresh token.",
        "fn tokenize(input: &str) -> Vec<Token> { input.split_whitespace().map(Token::new).collect() }",
        "md5sum: d41d8cd98f00b204e9800998ecf8427e",
        "https://example.com/search?q=rust%20regex&page=2",
        "Authorization: Bearer <token>",
        "curl -u \"$USER:$PASSWORD\" https://example.com",
    ];
    for c in clean {
        let f = t.engine.scan(c.as_bytes());
        assert!(f.is_empty(), "{c:?}: {f:?}");
    }
}

/// Hostile input: no panic, bounded work.
#[test]
fn hostile_input_is_bounded() {
    let t = DlpTester::new();
    let start = std::time::Instant::now();
    // A 4 MiB line of base64 alphabet, of percent escapes, of one keyword.
    let long_b64 = "QUJD".repeat(1 << 20);
    assert!(t.engine.scan(long_b64.as_bytes()).is_empty());
    let pct = "%41".repeat(1 << 20);
    let _ = t.engine.scan(pct.as_bytes());
    let tokens = "token=".repeat(500_000);
    let _ = t.engine.scan(tokens.as_bytes());
    let keys = "-----BEGIN PRIVATE KEY-----".repeat(50_000);
    let _ = t.engine.scan(keys.as_bytes());
    // Deeply nested encodings: past the depth bound they are just text.
    let mut nested = expand("ghp_{an:36}", 5).into_bytes();
    for _ in 0..12 {
        nested = base64_encode(&nested, false, true);
    }
    let _ = t.engine.scan(&nested);
    let mut pct_nested = b"%".to_vec();
    for _ in 0..2000 {
        pct_nested.extend_from_slice(b"25");
    }
    pct_nested.extend_from_slice(b"41");
    let _ = t.engine.scan(&pct_nested);
    // Invalid UTF-8 and invisible characters everywhere.
    let mut junk = Vec::new();
    for i in 0..200_000u32 {
        junk.extend_from_slice(&[0xff, 0xe2, 0x80, 0x8b, (i % 251) as u8, 0xc3]);
    }
    let _ = t.engine.scan(&junk);
    let _ = t.engine.scan_host(&"a".repeat(100_000));
    // Debug builds are slow; this bound only catches blow-ups.
    assert!(
        start.elapsed().as_secs() < 120,
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn three_layers_are_found_and_deeper_is_bounded() {
    let t = DlpTester::new();
    let secret = expand("ghp_{an:36}", 6);
    let mut layered = secret.clone().into_bytes();
    for _ in 0..3 {
        layered = base64_encode(&layered, false, true);
    }
    assert_eq!(t.engine.scan(&layered).len(), 1);
}

/// A long stream with secrets at many offsets: every secret reported once,
/// with its absolute offset, and never before `settled()` had passed it.
#[test]
fn long_stream_reports_absolute_offsets() {
    let t = DlpTester::new();
    let filler = "fn main() { println!(\"hello, world\"); } // ordinary code\n";
    let mut input = String::new();
    let mut expected = Vec::new();
    for i in 0..40 {
        for _ in 0..(37 * i % 101 + 20) {
            input.push_str(filler);
        }
        let token = expand("ghp_{an:36}", 100 + i as u64);
        input.push_str("token: ");
        expected.push(input.len() as u64..input.len() as u64 + 40);
        input.push_str(&token);
        input.push('\n');
    }
    assert!(input.len() > 4 * crate::STREAM_LOOKBACK);
    for chunk in [1000usize, 4096, 65536] {
        for step in [1024usize, 16 * 1024] {
            let mut s = t.engine.stream_with_step(step);
            let mut found = Vec::new();
            let mut last_settled = 0;
            for (n, piece) in input.as_bytes().chunks(chunk).enumerate() {
                let settled_before = s.settled();
                for f in s.push(piece) {
                    assert!(f.range.start >= settled_before, "finding before settled");
                    found.push(f);
                }
                assert!(s.settled() >= last_settled && s.settled() <= ((n + 1) * chunk) as u64);
                last_settled = s.settled();
            }
            found.extend(s.finish());
            let ranges: Vec<_> = found.iter().map(|f| f.range.clone()).collect();
            assert_eq!(ranges, expected, "chunk {chunk} step {step}");
        }
    }
}

/// A secret inside a base64 blob longer than the look-back, streamed: the
/// finding (the whole decoded piece) must not be lost when the blob's start
/// leaves the buffer.
#[test]
fn secret_in_a_long_encoded_run_survives_streaming() {
    let t = DlpTester::new();
    let mut text = String::new();
    for i in 0..3000 {
        text.push_str(&format!("line {i} of an ordinary log message\n"));
    }
    text.push_str(&expand("token: ghp_{an:36}\n", 77));
    for i in 0..300 {
        text.push_str(&format!("tail {i}\n"));
    }
    let blob = format!(
        "data={}\n",
        String::from_utf8(base64_encode(text.as_bytes(), false, true)).unwrap()
    );
    assert!(blob.len() > 3 * crate::STREAM_LOOKBACK);
    let whole = t.engine.scan(blob.as_bytes());
    assert!(whole.iter().any(|f| f.rule == "github-pat"), "{whole:?}");
    for step in [4096usize, 16 * 1024] {
        let mut s = t.engine.stream_with_step(step);
        let mut found = Vec::new();
        for chunk in blob.as_bytes().chunks(1500) {
            found.extend(s.push(chunk));
        }
        found.extend(s.finish());
        assert!(
            found.iter().any(|f| f.rule == "github-pat"),
            "step {step}: {found:?}"
        );
    }
}

/// Attack: a decoy run before a nested base64 payload, in one run that a
/// stream buffer's start cuts: the decoy decodes to text at a wrong
/// alignment and to noise at the right one. Reading only the first
/// alignment that looked like text garbled the payload.
#[test]
fn a_decoy_cannot_choose_the_alignment_of_a_cut_run() {
    let token = "kSdecoyalignment0123456789abcdefXYZ";
    let t = DlpTester::with_known(token);
    let x = format!(
        "note: {}\n",
        String::from_utf8(base64_encode(token.as_bytes(), false, true)).unwrap()
    );
    let mut decoy = String::new();
    while decoy.len() < 2000 || decoy.len() % 3 != 2 {
        decoy.push_str("plain words that read as text ");
        decoy.truncate(decoy.len().min(2000 + decoy.len() % 3));
        if decoy.len() >= 2000 && decoy.len() % 3 != 2 {
            decoy.push('x');
        }
    }
    let e = base64_encode(decoy.as_bytes(), false, false);
    assert_eq!(e.len() % 4, 3);
    let mut run = b"A".to_vec();
    run.extend_from_slice(&e);
    run.extend_from_slice(&base64_encode(x.as_bytes(), false, false));
    let found = t.engine.scan(&run);
    assert!(
        found.iter().any(|f| f.rule == crate::KNOWN_SECRET_RULE),
        "{found:?}"
    );
}

/// Attack: a known secret's UTF-32 form percent-encoded four times over is
/// longer than the stream scanner's rescanned tail, so no scan saw it
/// whole and it streamed out in 8 KiB frames. The whole-buffer scan finds
/// it; the stream must too.
#[test]
fn an_encoded_secret_longer_than_the_rescanned_tail_is_found_in_a_stream() {
    let token = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
    let t = DlpTester::with_known(token);
    let utf32: Vec<u8> = token
        .chars()
        .flat_map(|c| (c as u32).to_le_bytes())
        .collect();
    let p = percent_all(&percent_all(&percent_all(&percent_all(&utf32))));
    assert!(p.len() > 12_000);
    // JSON escapes of ASCII, three deep (six times longer a layer).
    let json_u = |b: &[u8]| -> Vec<u8> {
        b.iter()
            .flat_map(|c| format!("\\u{c:04x}").into_bytes())
            .collect()
    };
    let j = json_u(&json_u(&json_u(token.as_bytes())));
    assert!(j.len() > 8_700);
    for (what, p) in [("percent", p), ("json", j)] {
        let mut body = vec![b'a'; 4000];
        // Padding of URL-ish bytes right before it is not held.
        body.extend(std::iter::repeat_n(b'q', 30_000));
        body.extend_from_slice(&p);
        body.extend_from_slice(b" end of the body\n");
        body.extend(std::iter::repeat_n(b'z', 20_000));
        assert!(
            t.engine
                .scan(&body)
                .iter()
                .any(|f| f.rule == crate::KNOWN_SECRET_RULE),
            "{what}: the whole-buffer scan finds it"
        );
        for frame in [8 * 1024usize, 1000, 16 * 1024] {
            let mut s = t.engine.stream();
            let mut found = Vec::new();
            for c in body.chunks(frame) {
                found.extend(s.push(c));
            }
            found.extend(s.finish());
            assert!(
                found.iter().any(|f| f.rule == crate::KNOWN_SECRET_RULE
                    || f.rule == crate::ENCODING_TOO_DEEP_RULE),
                "{what}, frames of {frame}: {found:?}"
            );
        }
    }
}
