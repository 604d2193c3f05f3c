"""Preference/score records, the fsync'd JSONL store, validation of bad files, TRL round trip."""
from __future__ import annotations

import json
import os
import warnings

import pytest

from rlhf_lab import preferences as prefs
from rlhf_lab.preferences import (PreferenceFileError, PreferenceFileWarning, PreferenceRecord,
                                  PreferenceStore, ScoreRecord, ScoreStore, deduplicate, from_trl,
                                  read_preferences, read_scores, to_trl, write_trl_jsonl)


def rec(i: int, **kw) -> PreferenceRecord:
    return PreferenceRecord(f"prompt {i}", f"good {i}", f"bad {i}", rater="ana", time=f"2025-01-01T00:00:0{i % 10}Z", **kw)


def write_lines(path, lines: list[str], end: str = "\n") -> None:
    path.write_text("\n".join(lines) + end, encoding="utf-8")


GOOD = json.dumps(rec(1).to_dict())


# ----------------------------------------------------------------------------- records
def test_record_defaults_and_validation():
    r = PreferenceRecord("p", "a", "b")
    assert r.rater == "simulated" and r.tie is False and r.source is None
    assert r.time.endswith("+00:00") and r.time[:4].isdigit()  # ISO-8601 UTC
    with pytest.raises(ValueError, match="field 'chosen' must be str"):
        PreferenceRecord("p", 3, "b")
    with pytest.raises(ValueError, match="field 'score' must be an integer from 1 to 5"):
        ScoreRecord("p", "r", 6)
    with pytest.raises(ValueError, match="score"):
        ScoreRecord("p", "r", True)


def test_from_dict_ignores_unknown_keys_and_fills_defaults():
    r = PreferenceRecord.from_dict({"prompt": "p", "chosen": "a", "rejected": "b", "note": "hi"})
    assert (r.rater, r.time, r.tie, r.source) == ("unknown", "", False, None)


# ----------------------------------------------------------------------------- the store
def test_append_is_on_disk_and_fsynced(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(prefs.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = tmp_path / "new" / "dir" / "ratings.jsonl"       # parent folders do not exist yet
    store = PreferenceStore(path)
    store.append(rec(1))
    assert synced, "append must call os.fsync"
    with open(path, encoding="utf-8") as f:                  # a fresh open sees the record
        assert [json.loads(line) for line in f] == [rec(1).to_dict()]
    store.append(rec(2))
    assert len(store) == 2 and store.records() == [rec(1), rec(2)]


def test_append_never_rewrites_the_file(tmp_path):
    path = tmp_path / "r.jsonl"
    store = PreferenceStore(path)
    store.append(rec(1))
    before, inode = path.read_bytes(), path.stat().st_ino
    store.append(rec(2))
    after = path.read_bytes()
    assert path.stat().st_ino == inode and after.startswith(before)
    assert after[len(before):].count(b"\n") == 1


def test_append_after_a_crash_starts_a_fresh_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(GOOD + "\n" + GOOD[:25], encoding="utf-8")  # the crash cut line 2 short
    PreferenceStore(path).append(rec(3))
    with pytest.warns(PreferenceFileWarning, match=r"r.jsonl:2: .*not valid JSON"):
        assert read_preferences(path, strict=False) == [rec(1), rec(3)]


def test_store_rejects_the_other_record_kind(tmp_path):
    with pytest.raises(TypeError, match="PreferenceStore stores PreferenceRecord"):
        PreferenceStore(tmp_path / "p.jsonl").append(ScoreRecord("p", "r", 3))


def test_undo_last(tmp_path):
    path = tmp_path / "r.jsonl"
    store = PreferenceStore(path)
    assert store.undo_last() is None                         # no file yet
    for i in range(3):
        store.append(rec(i))
    first_two = path.read_bytes().split(b"\n")[:2]
    assert store.undo_last() == rec(2)
    assert path.read_bytes().split(b"\n")[:2] == first_two   # earlier lines kept byte for byte
    assert store.records() == [rec(0), rec(1)]
    assert store.undo_last() == rec(1) and store.undo_last() == rec(0)
    assert store.undo_last() is None and len(store) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["r.jsonl"]  # no temp files left behind


def test_undo_never_deletes_a_line_the_store_did_not_write(tmp_path):
    """Review rows 29 and 42: a broken last line, a valid line of another schema, and records written before
    this store existed (another kernel, before a restart) all stay; only the store's own line goes."""
    path = tmp_path / "r.jsonl"
    foreign = json.dumps(ScoreRecord("p", "resp", 3, rater="bo").to_dict())
    path.write_text(GOOD + "\n" + foreign + "\n", encoding="utf-8")
    store = PreferenceStore(path)
    assert store.undo_last() is None                          # nothing of its own yet
    with pytest.raises(RuntimeError, match="only removes its own lines"):
        store.undo(rec(1))                                    # in the file, but not written by this store
    store.append(rec(2))
    with open(path, "ab") as f:
        f.write(GOOD[:10].encode())                           # a crash left half a line at the end
    before = path.read_bytes()
    assert store.undo_last() == rec(2)
    after = path.read_bytes()
    assert after == before.replace(json.dumps(rec(2).to_dict()).encode() + b"\n", b"")
    assert GOOD.encode() in after and foreign.encode() in after and after.endswith(GOOD[:10].encode())
    assert store.undo_last() is None


def test_undo_keeps_lines_other_writers_appended_after_it(tmp_path):
    path = tmp_path / "r.jsonl"
    mine, theirs = PreferenceStore(path), PreferenceStore(path)
    mine.append(rec(1))
    theirs.append(rec(2))
    mine.append(rec(3))
    theirs.append(rec(4))
    assert mine.undo_last() == rec(3) and mine.undo(rec(1)) == rec(1)
    assert read_preferences(path) == [rec(2), rec(4)]
    with pytest.raises(RuntimeError, match="only removes its own lines"):
        mine.undo(rec(2))
    path.write_text("", encoding="utf-8")                     # someone emptied the file
    with pytest.raises(RuntimeError, match="no longer in"):
        theirs.undo(rec(4))


def test_undo_through_a_symlink_keeps_the_link(tmp_path):
    """Review row 32: the link stays a link and the target loses the record."""
    target = tmp_path / "drive" / "ratings.jsonl"
    target.parent.mkdir()
    link = tmp_path / "ratings.jsonl"
    link.symlink_to(target)
    store = PreferenceStore(link)
    store.append(rec(1))
    store.append(rec(2))
    assert store.undo_last() == rec(2)
    assert link.is_symlink() and read_preferences(target) == [rec(1)]
    store.append(rec(3))
    assert read_preferences(target) == [rec(1), rec(3)]


def test_store_expands_the_home_folder(tmp_path, monkeypatch):
    """Review row 33: ``~`` is the home folder, not a folder named ``~``."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    store = PreferenceStore("~/ratings/r.jsonl")
    store.append(rec(1))
    assert (tmp_path / "ratings" / "r.jsonl").exists() and not (tmp_path / "~").exists()


def test_undo_refuses_a_read_only_file_as_append_does(tmp_path):
    """Review row 25."""
    path = tmp_path / "r.jsonl"
    store = PreferenceStore(path)
    store.append(rec(1))
    path.chmod(0o444)
    try:
        with pytest.raises(PermissionError, match="read-only; nothing written"):
            store.append(rec(2))
        with pytest.raises(PermissionError, match="read-only"):
            store.undo_last()
        assert read_preferences(path) == [rec(1)]
    finally:
        path.chmod(0o644)


_WRITER = """
import sys
from rlhf_lab.preferences import PreferenceRecord, PreferenceStore
path, role, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = PreferenceStore(path)
for i in range(n):
    store.append(PreferenceRecord(f"prompt {i}", f"{role} good {i}", f"{role} bad {i}", rater=role))
    if role == "undoer" and i % 2 == 1:         # undo every second of its own records
        assert store.undo_last().chosen == f"{role} good {i}"
"""


def test_two_processes_appending_and_undoing_lose_nothing(tmp_path):
    """Review row 23: one process appends 400 records while another appends 80 and undoes 40 of them."""
    import subprocess
    import sys

    path = tmp_path / "shared.jsonl"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), role, str(n)], env=env)
             for role, n in [("appender", 400), ("undoer", 80)]]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    records = read_preferences(path)                          # strict: no damaged line either
    appended = [r.chosen for r in records if r.rater == "appender"]
    kept = [r.chosen for r in records if r.rater == "undoer"]
    assert appended == [f"appender good {i}" for i in range(400)]
    assert kept == [f"undoer good {i}" for i in range(0, 80, 2)]
    assert b"\n\n" not in path.read_bytes()                  # no blank lines from writers racing


def test_score_store_round_trip(tmp_path):
    store = ScoreStore(tmp_path / "scores.jsonl")
    s = ScoreRecord("p", "resp", 4, rater="ana", time="t", source="demo")
    store.append(s)
    assert read_scores(store.path) == [s] and store.undo_last() == s and len(store) == 0


# ----------------------------------------------------------------------------- bad input
def test_empty_file_and_blank_lines(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert read_preferences(empty) == []
    blanks = tmp_path / "blanks.jsonl"
    write_lines(blanks, ["", GOOD, "   ", "", GOOD, ""])
    assert read_preferences(blanks) == [rec(1), rec(1)]      # duplicates kept as they are


def test_missing_file_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl: no preference file here"):
        read_preferences(tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError, match="no score file"):
        read_scores(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("bad, message", [
    ("{not json", "not valid JSON"),
    ('["a", "b"]', "expected a JSON object, got list"),
    ('{"prompt": "p", "rejected": "b"}', "missing field 'chosen'"),
    ('{"prompt": "p", "chosen": 7, "rejected": "b"}', "field 'chosen' must be str, got int"),
    ('{"prompt": "p", "chosen": "a", "rejected": "b", "tie": "yes"}', "field 'tie' must be bool"),
])
def test_bad_line_names_path_and_line(tmp_path, bad, message):
    path = tmp_path / "x.jsonl"
    write_lines(path, [GOOD, "", bad, GOOD])                 # the bad line is line 3
    with pytest.raises(PreferenceFileError) as info:
        read_preferences(path)
    assert str(info.value).startswith(f"{path}:3: ") and message in str(info.value)
    assert info.value.line_no == 3 and info.value.path == str(path)
    with pytest.warns(PreferenceFileWarning, match=f"x.jsonl:3: .*{message[:12]}"):
        assert read_preferences(path, strict=False) == [rec(1), rec(1)]


def test_error_message_format(tmp_path):
    path = tmp_path / "x.jsonl"
    write_lines(path, [GOOD] * 6 + ['{"prompt": "p", "rejected": "b"}'])
    with pytest.raises(PreferenceFileError) as info:
        read_preferences(path)
    assert str(info.value) == f"{path}:7: missing field 'chosen'"


def test_truncated_last_line(tmp_path):
    path = tmp_path / "crash.jsonl"
    path.write_text(GOOD + "\n" + GOOD + "\n" + GOOD[:-8], encoding="utf-8")  # no final newline
    with pytest.raises(PreferenceFileError, match=r"crash.jsonl:3: last line is incomplete"):
        read_preferences(path)
    with pytest.warns(PreferenceFileWarning, match="incomplete"):
        assert read_preferences(path, strict=False) == [rec(1), rec(1)]


def test_last_line_without_newline_is_fine_when_complete(tmp_path):
    path = tmp_path / "hand.jsonl"
    write_lines(path, [GOOD, GOOD], end="")
    assert read_preferences(path) == [rec(1), rec(1)]


def test_strict_false_collects_every_problem(tmp_path):
    path = tmp_path / "x.jsonl"
    write_lines(path, ["oops", GOOD, '{"prompt": "p"}', json.dumps(rec(2).to_dict())])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_preferences(path, strict=False) == [rec(1), rec(2)]
    msgs = [str(w.message) for w in caught if issubclass(w.category, PreferenceFileWarning)]
    assert len(msgs) == 2 and ":1: " in msgs[0] and ":3: missing field 'chosen'" in msgs[1]


def test_read_scores_validates(tmp_path):
    path = tmp_path / "s.jsonl"
    write_lines(path, ['{"prompt": "p", "response": "r", "score": 5}', '{"prompt": "p", "response": "r", "score": 0}'])
    with pytest.raises(PreferenceFileError, match=r"s.jsonl:2: .*from 1 to 5"):
        read_scores(path)
    with pytest.warns(PreferenceFileWarning):
        assert [s.score for s in read_scores(path, strict=False)] == [5]


# ----------------------------------------------------------------------------- ties, duplicates, TRL
def test_deduplicate():
    tie_ab = PreferenceRecord("p", "A", "B", rater="ana", time="1", tie=True)
    tie_ba = PreferenceRecord("p", "B", "A", rater="ana", time="2", tie=True)
    flipped = PreferenceRecord("prompt 1", "bad 1", "good 1", rater="ana", time="3")
    out = deduplicate([rec(1), rec(1), tie_ab, tie_ba, flipped, rec(2)])
    assert out == [rec(1), tie_ab, flipped, rec(2)]          # a flipped judgement is noise, not a duplicate


def test_trl_round_trip_is_lossless(tmp_path):
    records = [rec(1), rec(2, source="policy step 3"), PreferenceRecord("p", "A", "B", rater="bo", time="t", tie=True)]
    rows = to_trl(records, include_ties=True)
    assert from_trl(rows) == records
    assert set(rows[0]) >= {"prompt", "chosen", "rejected"}
    assert len(to_trl(records)) == 2                         # ties left out by default
    assert to_trl(records, metadata=False)[0] == {"prompt": "prompt 1", "chosen": "good 1", "rejected": "bad 1"}
    path = write_trl_jsonl(tmp_path / "out" / "trl.jsonl", records, include_ties=True)
    assert read_preferences(path) == records


def test_framed_trl_rows_are_what_the_tiny_policy_reads():
    """framed=True: TRL joins prompt + reply, which must give format_prompt(prompt) + format_response(reply)."""
    from rlhf_lab.models import format_prompt, format_response

    row = to_trl([rec(1)], metadata=False, framed=True)[0]
    assert row == {"prompt": "User: prompt 1\nAssistant:", "chosen": " good 1", "rejected": " bad 1"}
    assert row["prompt"] + row["chosen"] == format_prompt("prompt 1") + format_response("good 1")
    assert to_trl([rec(1)], framed=True)[0]["rater"] == rec(1).rater        # metadata columns stay


def test_trl_rows_load_as_a_dataset():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(to_trl([rec(1), rec(2, source="s")]))
    assert ds.column_names[:3] == ["prompt", "chosen", "rejected"] and ds[1]["source"] == "s"


def test_rewritten_files_keep_ordinary_permissions(tmp_path):
    import os
    import stat

    from rlhf_lab.preferences import PreferenceRecord, PreferenceStore, write_trl_jsonl

    path = tmp_path / "r.jsonl"
    store = PreferenceStore(path)
    store.append(PreferenceRecord("p", "a", "b", rater="x"))
    store.append(PreferenceRecord("p", "c", "d", rater="x"))
    before = stat.S_IMODE(os.stat(path).st_mode)
    store.undo_last()
    assert stat.S_IMODE(os.stat(path).st_mode) == before
    out = tmp_path / "trl.jsonl"
    write_trl_jsonl(out, store.records())
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o666 & ~umask


def test_pair_choices_reads_the_latest_record_of_each_pair():
    from rlhf_lab.preferences import PreferenceRecord, pair_choices

    pairs = [("p1", "a", "b"), ("p2", "c", "d"), ("p3", "e", "f")]
    records = [PreferenceRecord(prompt="p1", chosen="a", rejected="b", rater="x"),
               PreferenceRecord(prompt="p2", chosen="c", rejected="d", rater="x"),
               PreferenceRecord(prompt="p2", chosen="d", rejected="c", rater="x"),          # changed their mind
               PreferenceRecord(prompt="p3", chosen="f", rejected="e", rater="x", tie=True)]
    assert pair_choices(records, pairs) == ["A", "B", "tie"]
    assert pair_choices(records[:1], pairs) == ["A", None, None]


def test_pool_files_merges_a_classroom_and_keeps_each_rater(tmp_path):
    folder = tmp_path / "class"
    ana = PreferenceStore(folder / "ana.jsonl")
    ana.append(rec(1))
    ana.append(rec(2))
    bo = PreferenceStore(folder / "bo.jsonl")
    bo.append(PreferenceRecord("prompt 1", "bad 1", "good 1", rater="bo", time="t1"))
    bo.append(PreferenceRecord("prompt 1", "bad 1", "good 1", rater="bo", time="t2"))   # judged twice: kept twice
    (folder / "copy-of-ana.jsonl").write_bytes((folder / "ana.jsonl").read_bytes())     # handed in twice
    no_name = {"prompt": "p", "chosen": "x", "rejected": "y"}
    (folder / "cleo.jsonl").write_text(json.dumps(no_name) + "\n" + "not json\n", encoding="utf-8")
    (folder / "notes.txt").write_text("not a ratings file", encoding="utf-8")
    with pytest.warns(PreferenceFileWarning, match="cleo.jsonl:2"):
        pooled = prefs.pool_files(folder)
    assert [(r.rater, r.chosen) for r in pooled] == [("ana", "good 1"), ("ana", "good 2"), ("bo", "bad 1"),
                                                      ("bo", "bad 1"), ("cleo", "x")]
    assert prefs.pool_files([folder / "bo.jsonl", folder / "bo.jsonl"]) == read_preferences(folder / "bo.jsonl")
    scores = ScoreStore(tmp_path / "s" / "ana.jsonl")
    scores.append(ScoreRecord("p", "r", 4, rater="ana"))
    assert prefs.pool_files(tmp_path / "s", scores=True) == scores.records()
    with pytest.raises(FileNotFoundError, match="no such file"):
        prefs.pool_files(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no \\*.jsonl file"):
        prefs.pool_files(tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else None)
