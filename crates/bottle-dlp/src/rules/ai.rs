//! Model APIs: Anthropic, OpenAI, Hugging Face, Groq, xAI, Replicate and
//! other inference providers.

use super::{RuleDef, context, token};

pub(crate) const RULES: &[RuleDef] = &[
    token(
        "anthropic-api-key",
        &["sk-ant-api"],
        r"\b(?P<s>sk-ant-api\d{2}-[\w-]{80,120})(?:[^\w-]|$)",
    ),
    token(
        "anthropic-oauth-token",
        &["sk-ant-oat"],
        r"\b(?P<s>sk-ant-oat\d{2}-[\w-]{80,120})(?:[^\w-]|$)",
    ),
    token(
        "anthropic-refresh-token",
        &["sk-ant-ort"],
        r"\b(?P<s>sk-ant-ort\d{2}-[\w-]{80,120})(?:[^\w-]|$)",
    ),
    token(
        "anthropic-admin-key",
        &["sk-ant-admin"],
        r"\b(?P<s>sk-ant-admin\d{2}-[\w-]{80,120})(?:[^\w-]|$)",
    ),
    RuleDef {
        before: 24,
        ..token(
            "openai-api-key",
            &["T3BlbkFJ"],
            r"\b(?P<s>sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})\b",
        )
    },
    token(
        "openai-project-key",
        &["sk-proj-"],
        r"\b(?P<s>sk-proj-[\w-]{40,200})(?:[^\w-]|$)",
    ),
    token(
        "openai-service-account-key",
        &["sk-svcacct-"],
        r"\b(?P<s>sk-svcacct-[\w-]{40,200})(?:[^\w-]|$)",
    ),
    token(
        "openai-admin-key",
        &["sk-admin-"],
        r"\b(?P<s>sk-admin-[\w-]{40,200})(?:[^\w-]|$)",
    ),
    token("huggingface-token", &["hf_"], r"\b(?P<s>hf_[A-Za-z]{34})\b"),
    token(
        "huggingface-org-token",
        &["api_org_"],
        r"\b(?P<s>api_org_[A-Za-z]{34})\b",
    ),
    token("groq-api-key", &["gsk_"], r"\b(?P<s>gsk_[A-Za-z0-9]{52})\b"),
    token("xai-api-key", &["xai-"], r"\b(?P<s>xai-[A-Za-z0-9]{80})\b"),
    token(
        "replicate-api-token",
        &["r8_"],
        r"\b(?P<s>r8_[A-Za-z0-9]{37})\b",
    ),
    token(
        "perplexity-api-key",
        &["pplx-"],
        r"\b(?P<s>pplx-[A-Za-z0-9]{48})\b",
    ),
    token(
        "openrouter-api-key",
        &["sk-or-v1-"],
        r"\b(?P<s>sk-or-v1-[0-9a-f]{64})\b",
    ),
    token(
        "langsmith-api-key",
        &["lsv2_"],
        r"\b(?P<s>lsv2_(?:pt|sk)_[0-9a-f]{32}_[0-9a-f]{10})\b",
    ),
    token(
        "pinecone-api-key",
        &["pcsk_"],
        r"\b(?P<s>pcsk_[A-Za-z0-9]{4,10}_[A-Za-z0-9]{50,80})\b",
    ),
    token(
        "nvidia-api-key",
        &["nvapi-"],
        r"\b(?P<s>nvapi-[\w-]{64})(?:[^\w-]|$)",
    ),
    token(
        "cerebras-api-key",
        &["csk-"],
        r"\b(?P<s>csk-[a-z0-9]{48})\b",
    ),
    token(
        "fireworks-api-key",
        &["fw_"],
        r"\b(?P<s>fw_[A-Za-z0-9]{24})\b",
    ),
    context(
        "cohere-api-key",
        &["cohere", "co_api_key"],
        concat!(
            r"(?i:cohere|co_api_key)[\w.-]{0,20}",
            assign!(),
            r"(?P<s>[A-Za-z0-9]{40})\b"
        ),
        4.0,
    ),
    context(
        "mistral-api-key",
        &["mistral"],
        concat!(
            r"(?i:mistral)[\w.-]{0,20}",
            assign!(),
            r"(?P<s>[A-Za-z0-9]{32})\b"
        ),
        3.8,
    ),
    context(
        "deepseek-api-key",
        &["deepseek"],
        concat!(
            r"(?i:deepseek)[\w.-]{0,20}",
            assign!(),
            r"(?P<s>sk-[0-9a-f]{32})\b"
        ),
        3.0,
    ),
];
