import json

import pytest

from engine.selfalign.records import (RecordFormatError, append_jsonl, atomic_write_json,
                                      atomic_write_jsonl, index_by_id, read_jsonl, record_id)


def test_append_then_read_round_trips_unicode_records(tmp_path):
    path = tmp_path / "r.jsonl"
    first = [{"id": record_id(1, 0), "text": "naïve 答案"}, {"id": record_id(1, 1), "n": 2}]
    assert append_jsonl(path, first) == 2
    append_jsonl(path, [{"id": record_id(1, 2)}])
    assert read_jsonl(path) == first + [{"id": "it01-000002"}]


def test_torn_final_line_is_ignored_on_read(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "te', encoding="utf-8")
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b"]


def test_append_after_torn_line_cuts_the_torn_tail(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "half', encoding="utf-8")
    append_jsonl(path, [{"id": "c"}])
    assert path.read_text(encoding="utf-8") == '{"id": "a"}\n{"id": "c"}\n'
    assert [r["id"] for r in read_jsonl(path)] == ["a", "c"]


def test_append_keeps_a_complete_final_line_that_lacks_its_newline(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}', encoding="utf-8")
    append_jsonl(path, [{"id": "c"}])
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b", "c"]


def test_append_to_file_holding_only_a_torn_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a", "x": [1, 2', encoding="utf-8")
    append_jsonl(path, [{"id": "b"}])
    assert read_jsonl(path) == [{"id": "b"}]


def test_malformed_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n\n{"id": broken}\n{"id": "c"}\n', encoding="utf-8")
    with pytest.raises(RecordFormatError, match=r"r\.jsonl:3: malformed JSON"):
        read_jsonl(path)


def test_malformed_final_line_with_newline_is_an_error_not_a_torn_write(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n{"id": \n', encoding="utf-8")
    with pytest.raises(RecordFormatError, match=r":2:"):
        read_jsonl(path)


def test_non_object_line_is_rejected(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(RecordFormatError, match=r":2: expected a JSON object"):
        read_jsonl(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_atomic_writes_replace_whole_file_and_leave_no_temporaries(tmp_path):
    path = tmp_path / "sub" / "out.jsonl"
    atomic_write_jsonl(path, [{"id": "x"}, {"id": "y"}])
    atomic_write_jsonl(path, [{"id": "z"}])
    assert read_jsonl(path) == [{"id": "z"}]
    meta = tmp_path / "manifest.json"
    atomic_write_json(meta, {"stage": "done", "count": 3})
    assert json.loads(meta.read_text()) == {"stage": "done", "count": 3}
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["manifest.json", "out.jsonl", "sub"]


def test_failed_atomic_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.jsonl"
    atomic_write_jsonl(path, [{"id": "old"}])
    with pytest.raises(TypeError):
        atomic_write_jsonl(path, [{"id": "new"}, "not a dict"])
    assert read_jsonl(path) == [{"id": "old"}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_index_by_id_rejects_repeats_and_missing_ids():
    assert index_by_id([{"id": "a"}, {"id": "b"}])["b"] == {"id": "b"}
    with pytest.raises(ValueError, match="'a' appears more than once"):
        index_by_id([{"id": "a"}, {"id": "a"}], source="responses.jsonl")
    with pytest.raises(ValueError, match="record 1 has no 'id'"):
        index_by_id([{"id": "a"}, {}])


def test_record_ids_sort_in_creation_order():
    ids = [record_id(i, k) for i in (1, 2, 10) for k in (0, 9, 10, 123456)]
    assert ids == sorted(ids)
