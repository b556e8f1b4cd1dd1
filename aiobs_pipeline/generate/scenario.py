"""The simulated world of `aiobs generate`: users, features, models, prompts, knowledge base and incidents.

Owns everything that is the same for every hour of a run: who the users are, which features exist and which
models and prompt versions serve them, the price table used for ground-truth spend, the knowledge base that
RAG answers are grounded in, the diurnal traffic shape and the incident specifications with their defaults.
It must not write files or draw per-hour randomness: `traces.py` builds hours from this, `writers.py` encodes.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

APP = "acme-assistant"
APP_VERSION = "2.14.0"
ENVIRONMENT = "production"
KB_DATA_SOURCE = "acme-kb"
RERANK_MODEL = "rerank-english-v3.0"

INCIDENT_KINDS = ("infinite_loop", "error_burst", "bad_prompt_version", "model_change")


@dataclass(frozen=True)
class ModelSpec:
    """A model as the application calls it: request name, dated response name, provider, price and speed."""

    name: str
    response_model: str
    provider: str
    # USD per million tokens; None for a model nobody prices (self-hosted fine-tunes, deployment names).
    input_per_mtok: float | None
    output_per_mtok: float | None
    cache_read_per_mtok: float | None
    tokens_per_second: float
    ttft_ms: float
    reasoning: bool = False
    embedding: bool = False

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float | None:
        """Cost in USD of one call, with cached input tokens billed at the cache-read rate."""
        if self.input_per_mtok is None or self.output_per_mtok is None:
            return None
        cache_rate = self.cache_read_per_mtok if self.cache_read_per_mtok is not None else self.input_per_mtok
        uncached = max(input_tokens - cached_tokens, 0)
        usd = (uncached * self.input_per_mtok + cached_tokens * cache_rate
               + output_tokens * self.output_per_mtok) / 1_000_000
        return round(usd, 8)


# Prices match genai-prices 0.2.3 for the response model (tests/unit/test_generate.py checks this), so the
# ground-truth spend in _ground_truth.json equals what the pipeline's pricing step computes.
MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "openai", 0.15, 0.60, 0.075, 140.0, 350.0),
    ModelSpec("gpt-4o", "gpt-4o-2024-08-06", "openai", 2.50, 10.0, 1.25, 115.0, 420.0),
    ModelSpec("o3-mini", "o3-mini-2025-01-31", "openai", 1.10, 4.40, 0.55, 240.0, 450.0, reasoning=True),
    ModelSpec("claude-3-5-sonnet-20241022", "claude-3-5-sonnet-20241022", "anthropic", 3.0, 15.0, 0.30,
              100.0, 550.0),
    ModelSpec("claude-3-5-haiku-20241022", "claude-3-5-haiku-20241022", "anthropic", 0.80, 4.0, 0.08,
              150.0, 420.0),
    ModelSpec("gemini-1.5-flash", "gemini-1.5-flash-002", "google", 0.075, 0.30, 0.01875, 190.0, 300.0),
    ModelSpec("gemini-1.5-flash-8b", "gemini-1.5-flash-8b-001", "google", 0.075, 0.30, 0.01875, 230.0, 250.0),
    # An Azure OpenAI deployment: the request names the deployment, the response names the real model.
    ModelSpec("prod-gpt4o-eastus", "gpt-4o-2024-08-06", "azure", 2.50, 10.0, 1.25, 105.0, 480.0),
    # A self-hosted fine-tune that no price list knows.
    ModelSpec("acme-support-llama-3.1-8b-ft", "acme-support-llama-3.1-8b-ft", "self-hosted", None, None, None,
              95.0, 300.0),
    ModelSpec("text-embedding-3-small", "text-embedding-3-small", "openai", 0.02, 0.0, None, 0.0, 0.0,
              embedding=True),
)}
EMBEDDING_MODEL = MODELS["text-embedding-3-small"]


@dataclass(frozen=True)
class Feature:
    """A product feature: endpoint, prompt, model mix, RAG or not, and its token shape."""

    name: str
    endpoint: str
    prompt_name: str
    prompt_version: str
    models: tuple[tuple[str, float], ...]
    rag: bool
    weight: float
    input_median: int
    output_median: int
    max_tokens: int
    temperature: float
    confidence_share: float  # share of answers that end with a "Confidence: ..." line


FEATURES: dict[str, Feature] = {f.name: f for f in (
    Feature("chat", "/v1/chat", "chat-assistant", "4",
            (("gpt-4o-mini", 0.60), ("gpt-4o", 0.20), ("claude-3-5-sonnet-20241022", 0.085),
             ("prod-gpt4o-eastus", 0.08), ("gemini-1.5-flash", 0.03), ("acme-support-llama-3.1-8b-ft", 0.005)),
            False, 0.40, 450, 180, 1024, 0.7, 0.2),
    Feature("search", "/v1/search", "answer-with-sources", "2",
            (("gpt-4o-mini", 0.8), ("gpt-4o", 0.2)), True, 0.20, 900, 150, 512, 0.2, 1.0),
    Feature("support", "/v1/support", "support-answer", "7",
            (("claude-3-5-sonnet-20241022", 1.0),), True, 0.15, 1300, 200, 800, 0.3, 1.0),
    Feature("summarize", "/v1/summarize", "summarize-doc", "2",
            (("gemini-1.5-flash", 0.6), ("claude-3-5-haiku-20241022", 0.4)), False, 0.12, 2400, 160, 600, 0.3,
            0.0),
    Feature("code-assist", "/v1/code", "code-helper", "3",
            (("o3-mini", 0.5), ("gpt-4o", 0.5)), False, 0.13, 1100, 200, 2048, 0.2, 0.1),
)}

SYSTEM_PROMPTS = {
    "chat-assistant": "You are Acme Assistant, a friendly helper for Acme Cloud customers. Answer briefly and "
                      "accurately. If you are unsure, say so.",
    "answer-with-sources": "Answer the question using only the sources below. Cite every source you use as "
                           "[doc_id]. End with a line 'Confidence: high|medium|low'.",
    "support-answer": "You are Acme's support agent. Use the knowledge base articles below, cite them as "
                      "[doc_id], and end with 'Confidence: high|medium|low'.",
    "summarize-doc": "Summarize the document for a busy reader in two or three sentences.",
    "code-helper": "You are a senior engineer helping with the Acme Cloud SDK. Prefer short, working examples.",
}


# ---------------------------------------------------------------------------------------------------------
# Knowledge base: topics with fixed facts, documents made of those facts, questions answered by one fact.


@dataclass(frozen=True)
class Topic:
    """A knowledge-base topic: true facts, the same facts with wrong numbers, and questions per fact."""

    name: str
    title: str
    facts: tuple[str, ...]
    wrong_facts: tuple[str, ...]
    questions: tuple[tuple[str, int], ...]  # (question, index of the fact that answers it)


TOPICS: tuple[Topic, ...] = (
    Topic("billing", "Billing and invoices", (
        "Invoices are generated on the first business day of each month and are available under Settings > Billing.",
        "Annual plans are billed upfront and include a 15% discount over monthly billing.",
        "Refunds for unused seats are issued as account credit within 5 business days.",
        "Payment by bank transfer is available for invoices above 1,000 USD.",
    ), (
        "Invoices are generated on the 15th of each month and are emailed to every workspace member.",
        "Annual plans include a 30% discount over monthly billing.",
        "Refunds for unused seats are paid back to the card within 30 business days.",
        "Payment by bank transfer is available for any invoice amount.",
    ), (("When are invoices generated?", 0), ("Do annual plans get a discount?", 1),
        ("How long does a refund for unused seats take?", 2), ("Can I pay an invoice by bank transfer?", 3))),
    Topic("api-limits", "API rate limits", (
        "The REST API allows 600 requests per minute per API key on the Team plan.",
        "Requests over the limit receive HTTP 429 with a Retry-After header.",
        "Enterprise plans can raise the limit to 3,000 requests per minute on request.",
        "Batch endpoints count as a single request for up to 500 items.",
    ), (
        "The REST API allows 100 requests per minute per API key on every plan.",
        "Requests over the limit are silently dropped without an error.",
        "Enterprise plans have no rate limit at all.",
        "Batch endpoints count every item as a separate request.",
    ), (("What is the API rate limit on the Team plan?", 0), ("What happens when I exceed the rate limit?", 1),
        ("Can the rate limit be raised?", 2), ("How do batch endpoints count against the limit?", 3))),
    Topic("sso", "Single sign-on", (
        "Single sign-on supports SAML 2.0 and OpenID Connect identity providers.",
        "SSO is available on the Business and Enterprise plans.",
        "SCIM provisioning syncs users and groups every 40 minutes.",
        "Admins can enforce SSO so that password login is disabled for all members.",
    ), (
        "Single sign-on only supports Google Workspace accounts.",
        "SSO is available on every plan, including the free tier.",
        "SCIM provisioning syncs users and groups once a week.",
        "Password login can never be disabled, even with SSO enforced.",
    ), (("Which identity providers does SSO support?", 0), ("Which plans include SSO?", 1),
        ("How often does SCIM provisioning sync?", 2), ("Can we disable password login?", 3))),
    Topic("data-export", "Exporting workspace data", (
        "Workspace owners can export all data as a ZIP archive of JSON files.",
        "Exports larger than 2 GB are split into several archives.",
        "Export download links expire after 24 hours.",
        "Scheduled exports can be delivered to an S3 bucket once per day.",
    ), (
        "Any member can export workspace data as a single CSV file.",
        "Exports are limited to 500 MB and larger workspaces cannot be exported.",
        "Export download links never expire.",
        "Scheduled exports can be delivered to an S3 bucket every five minutes.",
    ), (("How do I export all of my workspace data?", 0), ("What happens to very large exports?", 1),
        ("How long is an export link valid?", 2), ("Can exports be scheduled to S3?", 3))),
    Topic("webhooks", "Webhooks", (
        "Webhooks are signed with an HMAC-SHA256 signature in the X-Acme-Signature header.",
        "Failed webhook deliveries are retried 8 times with exponential backoff.",
        "Each workspace can register up to 20 webhook endpoints.",
        "Webhook payloads are limited to 256 KB.",
    ), (
        "Webhooks are not signed, so receivers should check the source IP address instead.",
        "Failed webhook deliveries are never retried.",
        "Each workspace can register a single webhook endpoint.",
        "Webhook payloads are limited to 16 KB.",
    ), (("How are webhooks signed?", 0), ("Are failed webhook deliveries retried?", 1),
        ("How many webhook endpoints can we register?", 2), ("How large can a webhook payload be?", 3))),
    Topic("regions", "Data residency", (
        "Data is stored in the region chosen at workspace creation: us-east, eu-west or ap-southeast.",
        "Moving a workspace to another region requires a support ticket and takes about 3 business days.",
        "Backups are kept in the same region as the primary data.",
        "Support staff can only access data with an explicit access grant from an admin.",
    ), (
        "All data is stored in us-east regardless of the region chosen.",
        "Workspaces can be moved to another region instantly from the settings page.",
        "Backups are replicated to every region for redundancy.",
        "Support staff have standing access to all customer data.",
    ), (("Where is our data stored?", 0), ("Can we move our workspace to the EU?", 1),
        ("Where are backups kept?", 2), ("Can Acme support staff read our data?", 3))),
    Topic("backups", "Backups and restore", (
        "Backups are taken every 6 hours and retained for 30 days.",
        "Point-in-time restore is available for the last 7 days on Enterprise plans.",
        "Restores are performed into a new workspace so existing data is never overwritten.",
        "Deleted projects can be recovered from the trash for 14 days.",
    ), (
        "Backups are taken once a week and retained for 7 days.",
        "Point-in-time restore is available for the last 90 days on every plan.",
        "Restores overwrite the current workspace in place.",
        "Deleted projects are removed immediately and cannot be recovered.",
    ), (("How often are backups taken?", 0), ("Is point-in-time restore available?", 1),
        ("Will a restore overwrite my current data?", 2), ("Can I recover a deleted project?", 3))),
    Topic("audit-logs", "Audit logs", (
        "Audit logs record sign-ins, permission changes and data exports.",
        "Audit logs are retained for 90 days on the Business plan and 365 days on Enterprise.",
        "Audit logs can be streamed to Splunk or Datadog.",
        "Only workspace owners and admins can view the audit log.",
    ), (
        "Audit logs only record failed sign-ins.",
        "Audit logs are retained for 7 days on every plan.",
        "Audit logs cannot be exported or streamed anywhere.",
        "Every member can view the full audit log.",
    ), (("What do audit logs record?", 0), ("How long are audit logs kept?", 1),
        ("Can we stream audit logs to our SIEM?", 2), ("Who can see the audit log?", 3))),
    Topic("mobile", "Mobile apps", (
        "The mobile app is available for iOS 16 and Android 10 or later.",
        "Offline mode keeps the last 50 opened documents available without a connection.",
        "Push notifications can be muted per project from the notification settings.",
        "The mobile app supports sign-in with SSO through the system browser.",
    ), (
        "The mobile app requires iOS 18 or Android 14.",
        "Offline mode keeps every document in the workspace available without a connection.",
        "Push notifications cannot be muted.",
        "SSO users cannot sign in to the mobile app.",
    ), (("Which phone versions does the mobile app support?", 0), ("Does the app work offline?", 1),
        ("How do I mute notifications for one project?", 2), ("Can I sign in with SSO on mobile?", 3))),
    Topic("passwords", "Passwords and sign-in", (
        "Password reset links expire after 30 minutes.",
        "Accounts are locked for 15 minutes after 5 failed sign-in attempts.",
        "Two-factor authentication supports authenticator apps and hardware security keys.",
        "Admins can require two-factor authentication for every member of the workspace.",
    ), (
        "Password reset links are valid for 7 days.",
        "Accounts are locked permanently after 3 failed sign-in attempts.",
        "Two-factor authentication only supports SMS codes.",
        "Two-factor authentication cannot be made mandatory.",
    ), (("How long is a password reset link valid?", 0), ("Why is my account locked?", 1),
        ("Which two-factor methods are supported?", 2), ("Can we require 2FA for everyone?", 3))),
    Topic("integrations", "Integrations", (
        "The Slack integration posts updates to one channel per project.",
        "The Jira integration syncs issue status both ways every 5 minutes.",
        "Integrations are managed by workspace admins under Settings > Integrations.",
        "The GitHub integration links pull requests to tasks by their task key.",
    ), (
        "The Slack integration posts every update to a direct message for each member.",
        "The Jira integration only syncs once a day and only from Jira to Acme.",
        "Any member can install or remove integrations.",
        "The GitHub integration requires copying pull request links by hand.",
    ), (("Where does the Slack integration post updates?", 0), ("How often does the Jira sync run?", 1),
        ("Who can manage integrations?", 2), ("How are GitHub pull requests linked to tasks?", 3))),
    Topic("plans", "Plans and pricing", (
        "The Team plan costs 12 USD per seat per month.",
        "The Business plan adds SSO and audit logs for 24 USD per seat per month.",
        "A free trial of the Business plan lasts 14 days.",
        "Seats can be added at any time and are prorated to the end of the billing period.",
    ), (
        "The Team plan costs 29 USD per seat per month.",
        "The Business plan costs 99 USD per seat per month and does not include SSO.",
        "The free trial lasts 60 days.",
        "Seats can only be added at renewal.",
    ), (("How much does the Team plan cost?", 0), ("What does the Business plan add?", 1),
        ("How long is the free trial?", 2), ("Can we add seats mid-cycle?", 3))),
)

DOC_FILLERS = (
    "This article applies to all workspaces.",
    "Contact support if the steps above do not match what you see.",
    "Screenshots in this article show the web app.",
    "This article was reviewed by the Acme support team.",
)
DOCS_PER_TOPIC = 6


@dataclass(frozen=True)
class Document:
    """A knowledge-base article: id, title, sentences, and which topic facts it contains."""

    doc_id: str
    topic: int
    title: str
    sentences: tuple[str, ...]
    fact_indexes: tuple[int, ...]

    @property
    def text(self) -> str:
        """The article text as the retriever returns it."""
        return " ".join(self.sentences)


def build_knowledge_base() -> tuple[Document, ...]:
    """The fixed knowledge base: DOCS_PER_TOPIC articles per topic, each holding three of its facts."""
    docs = []
    for t, topic in enumerate(TOPICS):
        n = len(topic.facts)
        for j in range(DOCS_PER_TOPIC):
            # Rotating windows of three facts: every fact appears in several articles, as in a real KB.
            indexes = tuple(sorted({(j + k) % n for k in range(3)}))
            sentences = tuple(topic.facts[i] for i in indexes) + (DOC_FILLERS[(t + j) % len(DOC_FILLERS)],)
            docs.append(Document(f"kb-{(t + 1) * 100 + j + 1:04d}", t, f"{topic.title} ({j + 1})", sentences,
                                 indexes))
    return tuple(docs)


KNOWLEDGE_BASE: tuple[Document, ...] = build_knowledge_base()
DOCS_BY_TOPIC: dict[int, tuple[Document, ...]] = {
    t: tuple(d for d in KNOWLEDGE_BASE if d.topic == t) for t in range(len(TOPICS))
}

HEDGES = (
    "I'm not entirely sure, but",
    "It might be that",
    "As far as I know,",
    "I believe",
)
CODE_TASKS = (
    ("How do I paginate through /v1/items with the Python SDK?",
     "Use the iterator helper, which follows the cursor for you:\n\n```python\nfrom acme import Client\n\n"
     "client = Client()\nfor item in client.items.list(page_size=100):\n    print(item.id)\n```"),
    ("Why does my webhook signature check fail?",
     "Compute the HMAC over the raw request body, not the parsed JSON:\n\n```python\nimport hashlib, hmac\n\n"
     "expected = hmac.new(secret, raw_body, hashlib.sha256).hexdigest()\nok = hmac.compare_digest(expected, "
     "header_value)\n```"),
    ("How do I retry on HTTP 429 with the SDK?",
     "Read the Retry-After header and back off:\n\n```python\nimport time\n\nresp = client.request(...)\nif "
     "resp.status_code == 429:\n    time.sleep(int(resp.headers['Retry-After']))\n```"),
    ("Write a function that exports a workspace to S3.",
     "A minimal version with the export API:\n\n```python\ndef export_to_s3(client, bucket):\n    job = "
     "client.exports.create(destination=f's3://{bucket}/acme/')\n    return job.wait()\n```"),
    ("How can I list audit log events from the last day?",
     "Filter by time on the audit endpoint:\n\n```python\nfrom datetime import datetime, timedelta, timezone\n\n"
     "since = datetime.now(timezone.utc) - timedelta(days=1)\nevents = client.audit_logs.list(since=since)\n```"),
)
CHAT_OPENERS = ("Sure!", "Happy to help.", "Good question.", "Here is the short answer:", "Of course.")
LOOP_LOG = "\n".join(
    f"2024-05-0{1 + i % 9}T0{i % 10}:1{i % 6}:0{i % 10}Z worker-{i % 7} "
    f"{'ERROR' if i % 5 == 0 else 'INFO'} job {4000 + i} "
    f"{'failed: upstream timeout after 30s' if i % 5 == 0 else 'completed in ' + str(100 + i * 7) + 'ms'}"
    for i in range(60)
)


# ---------------------------------------------------------------------------------------------------------
# Users and traffic shape.


@dataclass(frozen=True)
class User:
    """An application user with a traffic weight and per-feature preferences."""

    user_id: str
    weight: float
    feature_weights: tuple[float, ...]  # aligned with FEATURES order
    power: bool


N_USERS = 120
N_POWER_USERS = 5
LOOP_USER = "user_042"


def build_users(seed: int) -> tuple[User, ...]:
    """Users with a few power users; the loop user is an ordinary light user outside its incident."""
    rng = random.Random(derive_seed(seed, "users"))
    base = [f.weight for f in FEATURES.values()]
    users = []
    for i in range(1, N_USERS + 1):
        power = i <= N_POWER_USERS
        weight = 10.0 if power else min(rng.lognormvariate(0.0, 0.7), 4.0)
        prefs = tuple(b * rng.uniform(0.3, 1.7) for b in base)
        users.append(User(f"user_{i:03d}", weight, prefs, power))
    return tuple(users)


# Traces per hour at scale 1.0 at the daily peak (about 14:00 UTC); nights carry about a third of it.
PEAK_TRACES_PER_HOUR = 90.0


def diurnal_factor(hour: datetime) -> float:
    """Relative traffic for an hour: a smooth day curve, a little lighter at weekends."""
    h = hour.hour + 0.5
    distance = min(abs(h - 14.0), 24.0 - abs(h - 14.0))
    day = 0.33 + 0.67 * math.exp(-((distance / 5.0) ** 2))
    return day * (0.85 if hour.weekday() >= 5 else 1.0)


def derive_seed(seed: int, *parts: Any) -> int:
    """A 64-bit seed from the run seed and labels, stable across Python versions and processes."""
    text = "|".join([str(seed), *(str(p) for p in parts)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


# ---------------------------------------------------------------------------------------------------------
# Incidents.


@dataclass(frozen=True)
class IncidentSpec:
    """One injected incident: its kind, UTC window [start, end) and kind-specific parameters.

    Kinds and parameters:
    - infinite_loop: user_id, feature, model, calls_per_hour: one user repeats the same LLM call.
    - error_burst: error_share: that share of all LLM calls in the window fail (429 / 5xx / timeouts).
    - bad_prompt_version: feature, prompt_version: answers cite document ids that were not retrieved.
    - model_change: feature, model: the feature switches model; answers become ungrounded, hedged, low
      confidence.
    Degraded answers (the last two kinds) draw a negative feedback wave when feedback is generated.
    """

    kind: str
    start: datetime
    end: datetime
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in INCIDENT_KINDS:
            raise ValueError(f"unknown incident kind {self.kind!r}; known kinds: {', '.join(INCIDENT_KINDS)}")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError(f"incident {self.kind}: start and end must be timezone-aware (UTC)")
        if self.end <= self.start:
            raise ValueError(f"incident {self.kind}: end {self.end.isoformat()} is not after start "
                             f"{self.start.isoformat()}")

    def active(self, hour: datetime) -> bool:
        """True when the export hour starting at `hour` overlaps the incident window."""
        return self.start < hour + timedelta(hours=1) and hour < self.end

    def param(self, name: str) -> Any:
        """The parameter value, or the kind's default."""
        return self.params.get(name, INCIDENT_DEFAULTS[self.kind].get(name))


INCIDENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "infinite_loop": {"user_id": LOOP_USER, "feature": "chat", "model": "gpt-4o", "calls_per_hour": 320},
    "error_burst": {"error_share": 0.25},
    "bad_prompt_version": {"feature": "search", "prompt_version": "3"},
    "model_change": {"feature": "support", "model": "gemini-1.5-flash-8b"},
}
INCIDENT_DESCRIPTIONS = {
    "infinite_loop": "one user's client repeats the same LLM call hundreds of times per hour",
    "error_burst": "a provider outage: a large share of LLM calls fail with 429, 5xx and timeouts",
    "bad_prompt_version": "a new prompt version makes answers cite document ids that were not retrieved",
    "model_change": "a feature switches to a cheaper model and its answers become ungrounded, hedged and "
                    "low-confidence",
}


def incident_day(start: datetime, end: datetime) -> datetime:
    """Midnight (UTC) of the day that carries the default incidents: the last whole day of the window.

    A window shorter than a whole day gets the day it starts in, so incidents outside it are simply absent.
    """
    last_day = end.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    if last_day < start:
        return start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return last_day


def default_incidents(start: datetime, end: datetime) -> list[IncidentSpec]:
    """The demo incidents, all on the last day of the window; the days before stay clean."""
    day = incident_day(start, end)

    def at(hour: int) -> datetime:
        return day + timedelta(hours=hour)

    return [
        IncidentSpec("infinite_loop", at(8), at(11)),
        IncidentSpec("bad_prompt_version", at(10), at(24)),
        IncidentSpec("error_burst", at(13), at(14)),
        IncidentSpec("model_change", at(15), at(24)),
    ]


def demo_window(today: date | datetime | None = None) -> tuple[datetime, datetime]:
    """The demo window: the last 8 days of the calendar month before `today` (UTC), as [start, end)."""
    if today is None:
        today = datetime.now(UTC)
    if isinstance(today, datetime):
        today = today.astimezone(UTC) if today.tzinfo else today.replace(tzinfo=UTC)
    end = datetime(today.year, today.month, 1, tzinfo=UTC)
    return end - timedelta(days=8), end
