"""The real-client path end to end: examples/rag_app calls the local OpenAI-compatible server through the
`openai` client, traced by the official OpenTelemetry OpenAI instrumentation and exported by aiobs's OTLP/JSON
file exporter; Dagster then ingests and prices the partition, and every call is found with its tokens, cost,
messages, user and retrieved documents."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from dagster import instance_for_test, materialize
from genai_prices import Usage, calc_price

from aiobs_pipeline.costs import price_spans
from aiobs_pipeline.costs.settings import CostSettings
from aiobs_pipeline.defs.costs import hourly_costs, priced_spans
from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.defs.partitions import hourly_partitions
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.ingest.partition import landing_folder
from aiobs_pipeline.warehouse import read_table, warehouse_io_manager
from tests.integration.llm_fixtures import llm_server

__all__ = ["llm_server"]

APP = Path(__file__).resolve().parents[2] / "examples" / "rag_app" / "app.py"
QUESTIONS = [
    "How long do I have to ask for a refund?",
    "Is standard shipping free?",
    "How do I reset my password?",
    "What is the capital of Mongolia?",  # nothing in the corpus matches: an empty retrieval
]
USER = "u-rag-7"
# The local server answers under the model name it was asked for, and "aiobs-local" is no real model, so
# genai-prices cannot price it (checked below). Deployments that call a model by a private name map it to
# the real one with costs.model_aliases; here the local stand-in is priced as gpt-4o-mini.
SETTINGS_TOML = '[costs.model_aliases]\n"aiobs-local" = "gpt-4o-mini"\n'


def hour_key(hour: datetime) -> str:
    return f"{hour:%Y-%m-%d-%H}:00"


def file_open_hours_under_last_closed_hour(landing: Path) -> list[datetime]:
    """Move the files of hours Dagster has no partition for yet into the last closed hour; return the hours.

    An hourly partition exists once its hour has ended (the schedule runs it at :15 of the next hour), but
    the app has just written its spans into the current hour. Filing them under the previous hour is what a
    Collector flushing at the turn of the hour would do; the spans keep their own times (ingest counts them
    as late spans), so nothing about the calls changes.
    """
    hours = set()
    last_closed = datetime.strptime(hourly_partitions.get_last_partition_key(), "%Y-%m-%d-%H:%M").replace(tzinfo=UTC)
    for path in sorted(landing.rglob("*.jsonl")):
        hour = datetime.strptime("/".join(path.relative_to(landing).parts[:4]), "%Y/%m/%d/%H").replace(tzinfo=UTC)
        if not hourly_partitions.has_partition_key(hour_key(hour)):
            target = landing_folder(landing, last_closed)
            target.mkdir(parents=True, exist_ok=True)
            path.rename(target / f"{hour:%H}-{path.name}")
            hour = last_closed
        hours.add(hour)
    return sorted(hours)


@pytest.mark.slow
def test_rag_app_calls_are_ingested_and_priced_with_messages_and_documents(llm_server, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    run = subprocess.run(
        [sys.executable, str(APP), "--landing-root", str(landing), "--base-url", llm_server.base_url,
         "--user-id", USER, "--feature", "helpdesk-rag", "--session-id", "s-rag-1", "--json", *QUESTIONS],
        capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    answers = {r["trace_id"]: r for r in map(json.loads, run.stdout.splitlines())}
    assert [r["question"] for r in answers.values()] == QUESTIONS
    assert all(r["error"] is None and r["answer"] for r in answers.values())
    assert answers[next(iter(answers))]["documents"], "the refund question retrieves documents"

    hours = file_open_hours_under_last_closed_hour(landing)
    config = tmp_path / "aiobs.toml"
    config.write_text(SETTINGS_TOML)
    duckdb_path = str(tmp_path / "warehouse.duckdb")
    resources = {
        "aiobs": AiobsSettings(config_file=str(config), landing_root=str(landing),
                               feedback_root=str(tmp_path / "feedback"), reports_dir=str(tmp_path / "reports")),
        "warehouse": warehouse_io_manager("duckdb", duckdb_path=duckdb_path, postgres_url=None, schema="aiobs"),
    }
    with instance_for_test() as instance:
        result = materialize([ingest_export_hours, priced_spans, hourly_costs], resources=resources,
                             instance=instance,
                             tags={"dagster/asset_partition_range_start": hour_key(hours[0]),
                                   "dagster/asset_partition_range_end": hour_key(hours[-1])})
    assert result.success

    def table(name: str) -> pd.DataFrame:
        return read_table("duckdb", duckdb_path=duckdb_path, schema="aiobs", table=name)

    assert len(table("quarantined_spans")) == 0
    spans = table("spans")
    assert set(spans["trace_id"]) == set(answers), "every question's trace was ingested, and nothing else"
    priced = table("priced_spans").set_index("span_id")
    for trace_id, answer in answers.items():
        trace = spans[spans["trace_id"] == trace_id]
        assert sorted(trace["kind"]) == ["chain", "llm", "retrieval"]
        root = trace[trace["kind"] == "chain"].iloc[0]
        llm = trace[trace["kind"] == "llm"].iloc[0]
        retrieval = trace[trace["kind"] == "retrieval"].iloc[0]
        assert llm["parent_span_id"] == retrieval["parent_span_id"] == root["span_id"]
        for span in (root, llm, retrieval):
            assert (span["user_id"], span["session_id"], span["feature"], span["app"], span["environment"],
                    span["prompt_name"], span["prompt_version"]) == (
                USER, "s-rag-1", "helpdesk-rag", "rag-helpdesk", "demo", "helpdesk-answer", "v1")

        # The call: provider, model, tokens, messages (content on the span), status.
        assert (llm["provider"], llm["request_model"], llm["model"], llm["status"]) == (
            "openai", "aiobs-local", "aiobs-local", "ok")
        assert llm["input_tokens"] > 0 and llm["output_tokens"] > 0
        assert llm["total_tokens"] == llm["input_tokens"] + llm["output_tokens"]
        assert llm["temperature"] == pytest.approx(0.2) and llm["max_tokens"] == 256
        messages = json.loads(llm["input_messages"])
        assert [m["role"] for m in messages] == ["system", "user"]
        assert messages[1]["content"].endswith(f"Question: {answer['question']}")
        assert json.loads(llm["output_messages"]) == [
            {"role": "assistant", "content": answer["answer"], "finish_reason": "stop"}]
        assert llm["output_text"] == answer["answer"]

        # The retrieval: the documents the app used, with their text, which is what the prompt carried.
        documents = json.loads(retrieval["documents"]) if pd.notna(retrieval["documents"]) else []
        assert [d["id"] for d in documents] == answer["documents"]
        assert [d["rank"] for d in documents] == list(range(1, len(documents) + 1))
        for document in documents:
            assert document["score"] > 0 and f"[{document['id']}] {document['text']}" in messages[1]["content"]

        # The cost: genai-prices for gpt-4o-mini (the alias), the same as the library's own calculation.
        call = priced.loc[llm["span_id"]]
        expected = calc_price(Usage(input_tokens=int(llm["input_tokens"]), output_tokens=int(llm["output_tokens"])),
                              "gpt-4o-mini", provider_id="openai", genai_request_timestamp=llm["start_time"])
        assert (call["cost_status"], call["price_source"], call["priced_model"], bool(call["billable"])) == (
            "priced", "genai-prices", "gpt-4o-mini", True)
        assert call["cost_usd"] == pytest.approx(float(expected.total_price), rel=1e-9)
        assert priced.loc[retrieval["span_id"], "cost_status"] == "not_billable"

    hourly = table("hourly_costs")
    assert set(hourly["user_id"]) == {USER} and set(hourly["model"]) == {"aiobs-local"}
    assert hourly["calls"].sum() == len(answers)
    assert hourly["cost_usd"].sum() == pytest.approx(priced["cost_usd"].sum())

    # Why the alias is set: without it the local model name has no price.
    unaliased = price_spans(spans, CostSettings())
    assert set(unaliased.loc[unaliased["kind"] == "llm", "cost_status"]) == {"unpriced_model"}
