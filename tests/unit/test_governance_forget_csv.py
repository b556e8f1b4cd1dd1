"""Forgetting a user in CSV landing files (Langfuse blob export): rows removed byte-exactly, others kept."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from aiobs_pipeline.feedback.settings import FeedbackSettings
from aiobs_pipeline.governance.forget import (
    UserKeys,
    collect_landing_keys,
    forget_in_feedback_landing,
    forget_in_landing,
)
from aiobs_pipeline.ingest.partition import read_file

BLOB = Path(__file__).parents[1] / "fixtures" / "langfuse_blob"
WINDOW = "2026-12-07T14-00-00"


def _copy(tmp_path: Path, *names: str) -> Path:
    root = tmp_path / "landing"
    folder = root / "2026" / "12" / "07" / "13"
    folder.mkdir(parents=True)
    for name in names:
        shutil.copy(BLOB / name, folder / name.replace("/", "-"))
    return root


def test_enriched_csv_rows_of_the_user_are_removed_and_the_rest_kept_byte_for_byte(tmp_path: Path) -> None:
    root = _copy(tmp_path, f"observations_v2/{WINDOW}.csv")
    path = next(root.rglob("*.csv"))
    before = path.read_bytes()
    keys = UserKeys("user-42")
    collect_landing_keys([root], keys)
    assert {"o-2001", "o-2002"} <= keys.spans and "t-1001" in keys.traces
    items = forget_in_landing(root, keys, dry_run=False)
    assert [i.action for i in items] == ["rewrote_file"], items
    after = path.read_bytes()
    assert b"user-42" not in after
    rows = read_file(path, "x", fast_path=False).rows
    assert sorted(rows["span_id"]) == ["o-2006", "o-2007"]
    # The header and the kept rows are the original bytes (quoted newlines included), in order.
    lines = before.split(b"\n")
    assert after.startswith(lines[0] + b"\n")
    assert after == b"".join(line + b"\n" for line in lines[:-1]
                             if line.startswith(b'"id"') or b'"o-2006"' in line or b'"o-2007"' in line)


def test_legacy_observations_go_with_their_traces_row(tmp_path: Path) -> None:
    root = _copy(tmp_path, f"observations/{WINDOW}.csv", f"traces/{WINDOW}.csv")
    keys = UserKeys("user-43")
    collect_landing_keys([root], keys)
    assert "t-3001" in keys.traces
    items = forget_in_landing(root, keys, dry_run=False)
    assert sorted(i.action for i in items) == ["rewrote_file", "rewrote_file"], items
    observations = next(root.rglob("observations-*.csv"))
    traces = next(root.rglob("traces-*.csv"))
    assert sorted(read_file(observations, "o", fast_path=False).rows["span_id"]) == ["o-4003"]
    assert b"t-3001" not in traces.read_bytes() and b"user-43" not in traces.read_bytes()
    assert b"t-3002" in traces.read_bytes()


def test_unreadable_csv_lines_naming_the_user_are_left_in_place_and_said(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    folder = root / "2026" / "12" / "07" / "13"
    folder.mkdir(parents=True)
    path = folder / "rows.csv.gz"
    header = b'"id","trace_id","type","start_time","project_id","user_id"\n'
    path.write_bytes(gzip.compress(header + b'"a","t1","SPAN","2026-12-07 13:00:00","p","bob"\n'
                                   b'"b","t2","SPAN","2026-12-07 13:00:00","p","bob","extra"\n'
                                   b'"c","t3","SPAN","2026-12-07 13:00:00","p","carol"\n'))
    keys = UserKeys("bob")
    collect_landing_keys([root], keys)
    items = forget_in_landing(root, keys, dry_run=False)
    assert sorted(i.action for i in items) == ["left_in_place", "rewrote_file"], items
    assert "line 3" in next(i for i in items if i.action == "left_in_place").detail
    data = gzip.decompress(path.read_bytes())
    assert data == header + b'"b","t2","SPAN","2026-12-07 13:00:00","p","bob","extra"\n' + \
        b'"c","t3","SPAN","2026-12-07 13:00:00","p","carol"\n'


def test_blob_scores_about_the_users_traces_are_removed_from_feedback_csv(tmp_path: Path) -> None:
    landing = _copy(tmp_path, f"observations_v2/{WINDOW}.csv")
    feedback = tmp_path / "feedback" / "2026" / "12" / "07" / "13"
    feedback.mkdir(parents=True)
    scores = feedback / "scores.csv"
    shutil.copy(BLOB / f"scores/{WINDOW}.csv", scores)
    keys = UserKeys("user-42")
    collect_landing_keys([landing], keys)
    items = forget_in_feedback_landing(tmp_path / "feedback", keys, FeedbackSettings(), dry_run=False)
    assert [i.action for i in items if i.action != "unreadable_kept"] == ["rewrote_file"], items
    left = scores.read_bytes()
    assert b"t-1001" not in left and b'"s-5002"' in left and b'"s-5010"' in left
