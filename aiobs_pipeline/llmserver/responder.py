"""What the local server answers: a deterministic stand-in for a model, not a model.

The answer to a chat request depends only on the messages, the sampling parameters, the sample index and the
server seed. Modes, checked in this order:

1. **judge** - a system (or developer) message names all three verdicts SUPPORTS, REFUTES and
   NOT_ENOUGH_INFO: the user message's `Claim:` is compared lexically with its `Evidence:` (token overlap,
   negation words, numbers) and the answer is the verdict plus a one-line explanation.
2. **speculative** - the last user message contains a speculation marker (see SPECULATION_MARKERS, e.g.
   "speculate", "guess", "predict"): made-up facts that vary per sample (inconsistent by design).
3. **context** - the last user message holds a `Context:` (or `Documents:`) block: the context sentences
   that overlap the question most (a grounded, extractive answer).
4. **knowledge** - the last user message names a topic of the built-in knowledge base: its facts verbatim,
   the same every time, even at temperature > 0.
5. **unknown** - anything else is treated as a question about an unknown entity: made-up facts that vary
   per sample, like mode 2.

"Vary per sample" means: at temperature 0 every sample is the same (greedy decoding); at temperature > 0
the made-up facts are drawn from a generator seeded by (server seed, prompt, request seed, sample index,
temperature). An identical request therefore always gets the identical response: consistency re-queries
must ask for `n` > 1 samples or pass a different `seed` per re-query to see disagreement.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any

from aiobs_pipeline.llmserver import text as t
from aiobs_pipeline.llmserver.knowledge import find_topic

SPECULATION_MARKERS = frozenset(
    {"speculate", "speculative", "speculation", "guess", "predict", "prediction", "imagine", "rumor", "rumour",
     "hypothetically"}
)
JUDGE_LABELS = ("SUPPORTS", "REFUTES", "NOT_ENOUGH_INFO")
SUPPORT_COVERAGE = 0.75
REFUTE_COVERAGE = 0.5

_CLAIM_RE = re.compile(r"(?ims)^\s*(?:claim|statement)\s*:\s*(.*?)(?=^\s*(?:evidence|context|documents?)\s*:|\Z)")
_EVIDENCE_RE = re.compile(r"(?ims)^\s*(?:evidence|context|documents?)\s*:\s*(.*?)(?=^\s*(?:claim|statement)\s*:|\Z)")
_CONTEXT_RE = re.compile(r"(?ims)^\s*(?:context|documents?)\s*:\s*(.*?)(?=^\s*(?:question|query)\s*:|\Z)")
_QUESTION_RE = re.compile(r"(?ims)^\s*(?:question|query)\s*:\s*(.*)")
_SUBJECT_RE = re.compile(r"\b[A-Z][\w'-]*(?:\s+(?:of\s+|the\s+|de\s+|van\s+)?[A-Z][\w'-]*)*")
_QUESTION_STARTERS = frozenset(
    "What Who Whom Whose When Where Why How Which Tell Please Describe Explain Give List Is Are Was Were Do "
    "Does Did Can Could Would Should I Speculate Guess Predict Imagine Hypothetically Summarise Summarize".split()
)

_NAMES = ("Maria Lindqvist", "Tomas Okafor", "Elena Petrova", "Hiro Tanaka", "Amara Diallo", "Lucas Moreau",
          "Priya Raman", "Jonas Weber", "Sofia Alvarez", "Chen Wei", "Oliver Grant", "Nadia Haddad")
_CITIES = ("Lisbon", "Oslo", "Nairobi", "Osaka", "Toronto", "Krakow", "Lyon", "Perth", "Austin", "Seville",
           "Gdansk", "Tallinn")
_KNOWN_FOR = ("its copper roof", "a prize-winning bridge design", "an annual lantern festival",
              "its work on tidal energy", "a rare manuscript collection", "a record-breaking bell",
              "pioneering glass recycling", "its underground archive", "a famous clock tower",
              "early radio experiments")
_UNITS = ("employees", "members", "visitors a year", "volumes", "students", "branches")


@dataclass(frozen=True)
class Answer:
    """One sampled answer: its text, the mode that produced it, and whether it is stable across samples."""

    text: str
    mode: str
    stable: bool


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "\n".join(parts)
    return ""


def _texts_by_role(messages: list[dict[str, Any]], roles: tuple[str, ...]) -> list[str]:
    return [message_text(m.get("content")) for m in messages if m.get("role") in roles]


def _is_judge(system_text: str) -> bool:
    return all(label in system_text for label in JUDGE_LABELS)


def _has_marker(text: str) -> bool:
    return any(w in SPECULATION_MARKERS for w in t.words(text))


def _subject(text: str) -> str:
    candidates = []
    for match in _SUBJECT_RE.finditer(text):
        phrase = match.group(0).strip()
        first, *rest = phrase.split()
        if first in _QUESTION_STARTERS:
            if not rest:
                continue
            phrase = " ".join(rest)
        candidates.append(phrase)
    if candidates:
        return max(candidates, key=len)
    content = t.content_words(text)
    return " ".join(content[-2:]).title() if content else "It"


def _speculate(prompt: str, rng: random.Random) -> str:
    subject = _subject(prompt)
    year = rng.randint(1820, 2015)
    return " ".join(
        (
            f"{subject} was founded in {year} by {rng.choice(_NAMES)} in {rng.choice(_CITIES)}.",
            f"It is best known for {rng.choice(_KNOWN_FOR)}, first shown in {year + rng.randint(3, 60)}.",
            f"Today it has about {rng.randint(2, 950) * 10} {rng.choice(_UNITS)}.",
        )
    )


def _extractive(context: str, question: str) -> str:
    wanted = set(t.content_words(question))
    scored = []
    for position, sentence in enumerate(t.sentences(context)):
        overlap = len(wanted & set(t.content_words(sentence)))
        if overlap:
            scored.append((-overlap, position, sentence))
    if not scored:
        return "The provided context does not contain the answer."
    best = sorted(scored)[:2]
    return " ".join(sentence for _, _, sentence in sorted(best, key=lambda item: item[1]))


def judge(claim: str, evidence: str) -> tuple[str, str]:
    """A lexical verdict (SUPPORTS, REFUTES or NOT_ENOUGH_INFO) on a claim against evidence, and why.

    Coverage is the share of the claim's distinct non-numeric content words found in the evidence. With
    enough coverage, a claim number the evidence does not contain (while an overlapping evidence sentence
    states a number), or a negation on one side only, refutes; high coverage with agreeing numbers and
    negation supports; anything else is not enough information.
    """
    claim_numbers = t.numbers(claim)
    claim_words = {w for w in t.content_words(claim) if not _is_number(w)}
    if not claim_words:
        return "NOT_ENOUGH_INFO", "The claim has no content words to check."
    evidence_sentences = t.sentences(evidence)
    if not evidence_sentences:
        return "NOT_ENOUGH_INFO", "No evidence was given."

    def overlap(sentence: str) -> int:
        return len(claim_words & set(t.content_words(sentence)))

    matched = claim_words & set(t.content_words(evidence))
    coverage = len(matched) / len(claim_words)
    best = max(evidence_sentences, key=overlap)
    missing_numbers = sorted(claim_numbers - t.numbers(evidence))
    numbered = [s for s in evidence_sentences if t.numbers(s) and overlap(s) > 0]
    if coverage >= REFUTE_COVERAGE and missing_numbers and numbered:
        stated = max(numbered, key=overlap)
        said = ", ".join(sorted(t.numbers(stated)))
        return "REFUTES", f"The claim says {', '.join(missing_numbers)} but the evidence says {said}: \"{stated}\""
    if coverage >= REFUTE_COVERAGE and t.has_negation(claim) != t.has_negation(best):
        side = "claim" if t.has_negation(claim) else "evidence"
        return "REFUTES", f"The {side} negates what the other states: \"{best}\""
    if coverage >= SUPPORT_COVERAGE and not missing_numbers:
        cited = max((s for s in evidence_sentences if claim_numbers & t.numbers(s)), key=overlap, default=best)
        return "SUPPORTS", f"{len(matched)} of {len(claim_words)} claim terms match the evidence: \"{cited}\""
    missing = sorted(claim_words - matched) + missing_numbers
    return (
        "NOT_ENOUGH_INFO",
        f"Only {len(matched)} of {len(claim_words)} claim terms appear in the evidence "
        f"(missing: {', '.join(missing[:6])}).",
    )


def _is_number(word: str) -> bool:
    return word.replace(",", "").replace(".", "").isdigit()


def _judge_answer(user_text: str, json_mode: bool) -> str:
    claim_match = _CLAIM_RE.search(user_text)
    evidence_match = _EVIDENCE_RE.search(user_text)
    if claim_match is None:
        verdict, explanation = "NOT_ENOUGH_INFO", "No 'Claim:' section was found in the request."
    else:
        evidence = evidence_match.group(1).strip() if evidence_match else ""
        verdict, explanation = judge(claim_match.group(1).strip(), evidence)
    if json_mode:
        return json.dumps({"verdict": verdict, "explanation": explanation})
    return f"{verdict}\n{explanation}"


def answer(
    messages: list[dict[str, Any]],
    *,
    temperature: float,
    request_seed: int | None,
    sample: int,
    server_seed: int,
    json_mode: bool = False,
) -> Answer:
    """The answer to one sample of a chat request (see the module docstring for the modes)."""
    system_text = "\n".join(_texts_by_role(messages, ("system", "developer")))
    user_texts = _texts_by_role(messages, ("user",))
    user_text = user_texts[-1] if user_texts else ""
    if _is_judge(system_text):
        json_mode = json_mode or "json" in system_text.lower()
        return Answer(_judge_answer(user_text, json_mode), "judge", True)
    if not _has_marker(user_text):
        context = _CONTEXT_RE.search(user_text)
        if context:
            question = _QUESTION_RE.search(user_text)
            asked = question.group(1) if question else user_text[: context.start()]
            return Answer(_extractive(context.group(1), asked), "context", True)
        topic = find_topic(user_text)
        if topic is not None:
            return Answer(topic.answer, "knowledge", True)
    mode = "speculative" if _has_marker(user_text) else "unknown"
    prompt_key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
    if temperature <= 0:
        rng = random.Random(t.stable_hash(server_seed, prompt_key))
    else:
        rng = random.Random(t.stable_hash(server_seed, prompt_key, request_seed, sample, round(temperature, 4)))
    text = _speculate(user_text, rng)
    if json_mode:
        text = json.dumps({"answer": text})
    return Answer(text, mode, False)


def token_logprobs(answer_: Answer, prompt_key: str, sample: int, top: int) -> list[dict[str, Any]]:
    """Pseudo log-probabilities per output token: near 0 for stable answers, low for made-up content words."""
    content = []
    for position, token in enumerate(t.tokens(answer_.text)):
        u = t.unit_interval("lp", prompt_key, sample, position, token)
        invented = not answer_.stable and (token.isdigit() or token[:1].isupper() or len(token) > 5)
        logprob = -(0.6 + 2.4 * u) if invented else -(0.25 * u)
        alternatives = [
            {"token": f"{token}_{k}", "logprob": logprob - 1.0 - k, "bytes": list(f"{token}_{k}".encode())}
            for k in range(top)
        ]
        content.append(
            {"token": token, "logprob": round(logprob, 6), "bytes": list(token.encode()), "top_logprobs": alternatives}
        )
    return content
