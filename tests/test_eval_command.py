"""``jsug-bot eval FILE --json``: per-question results and the metrics computed from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main

CASES = [
    {"query": "パスワードを忘れました", "expected": ["password-reset"]},
    {"query": "メルマガを止めたい", "expected": ["newsletter-dm-stop"]},
    {"query": "明日の東京の天気は晴れますか", "expected": []},
    # Deliberately wrong: this is a password question, not a withdrawal.
    {"query": "パスワードを忘れた", "expected": ["withdrawal"]},
]
RESULT_KEYS = {"query", "expected", "outcome", "faq_id", "score", "suggestions", "ranked"}
METRIC_KEYS = {
    "in_scope_answered_correctly",
    "wrong_answers",
    "out_of_scope_fallback",
    "top3_recall",
    "mrr",
    "queries_per_second",
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_cases(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def case_lines(cases: list[dict]) -> list[str]:
    return [json.dumps(case, ensure_ascii=False) for case in cases]


@pytest.fixture
def report(capsys, tmp_path) -> dict:
    path = write_cases(tmp_path / "cases.jsonl", case_lines(CASES))
    code, out, err = run(capsys, "eval", str(path), "--json")
    assert code == 0, err
    assert "Traceback" not in out + err
    return json.loads(out)


def test_eval_json_has_one_result_per_line_with_its_ranking(report):
    results = report["results"]
    assert [r["query"] for r in results] == [c["query"] for c in CASES]
    assert [r["expected"] for r in results] == [c["expected"] for c in CASES]
    for result in results:
        assert RESULT_KEYS <= set(result)
        assert result["outcome"] in {"answer", "suggest", "fallback"}
        assert isinstance(result["score"], float)
        assert 1 <= len(result["ranked"]) <= 10
        assert len(set(result["ranked"])) == len(result["ranked"])
        if result["outcome"] == "answer":
            assert result["faq_id"] == result["ranked"][0]
            assert result["suggestions"] == []
        else:
            assert result["faq_id"] is None
        if result["outcome"] == "suggest":
            assert result["suggestions"] and set(result["suggestions"]) <= set(result["ranked"])


def test_eval_answers_the_in_scope_lines_and_counts_the_wrong_expectation_as_wrong(report):
    password, newsletter, weather, wrong = report["results"]
    assert (password["outcome"], password["faq_id"]) == ("answer", "password-reset")
    assert newsletter["ranked"][0] == "newsletter-dm-stop"
    assert weather["outcome"] != "answer"
    assert (wrong["outcome"], wrong["faq_id"]) == ("answer", "password-reset")
    assert wrong["ranked"][0] != "withdrawal"
    assert report["metrics"]["wrong_answers"] >= 1


def _rr(ranked: list[str], expected: list[str]) -> float:
    return next((1 / rank for rank, faq_id in enumerate(ranked, start=1) if faq_id in expected), 0.0)


def test_eval_metrics_agree_with_the_results(report):
    metrics, results = report["metrics"], report["results"]
    assert METRIC_KEYS <= set(metrics)
    in_scope = [r for r in results if r["expected"]]
    out_of_scope = [r for r in results if not r["expected"]]
    assert (metrics["queries"], metrics["in_scope"], metrics["out_of_scope"]) == (4, 3, 1)

    correct = sum(r["outcome"] == "answer" and r["faq_id"] in r["expected"] for r in in_scope)
    wrong = sum(r["outcome"] == "answer" and r["faq_id"] not in r["expected"] for r in results)
    fallback = sum(r["outcome"] == "fallback" for r in out_of_scope)
    top3 = sum(any(f in r["expected"] for f in r["ranked"][:3]) for r in in_scope)
    mrr = sum(_rr(r["ranked"], r["expected"]) for r in in_scope) / len(in_scope)

    assert metrics["in_scope_answered_correctly"] == pytest.approx(correct / 3, abs=1e-4)
    assert metrics["wrong_answers"] == wrong
    assert metrics["out_of_scope_fallback"] == pytest.approx(fallback / 1, abs=1e-4)
    assert metrics["top3_recall"] == pytest.approx(top3 / 3, abs=1e-4)
    assert metrics["mrr"] == pytest.approx(mrr, abs=1e-4)
    assert isinstance(metrics["queries_per_second"], float) and metrics["queries_per_second"] > 0
    # The deliberately wrong line can never be right, so these can never be perfect.
    assert metrics["in_scope_answered_correctly"] < 1.0
    assert metrics["mrr"] < 1.0


def test_eval_without_json_prints_each_metric(capsys, tmp_path):
    path = write_cases(tmp_path / "cases.jsonl", case_lines(CASES))
    code, out, err = run(capsys, "eval", str(path))
    assert code == 0, err
    for key in METRIC_KEYS:
        assert any(line.split()[0] == key for line in out.splitlines() if line.strip()), key


def test_eval_rejects_an_unknown_expected_id_naming_file_and_line(capsys, tmp_path):
    lines = case_lines(CASES)
    lines[1] = json.dumps({"query": "会費はいくら", "expected": ["membership-fees"]}, ensure_ascii=False)
    path = write_cases(tmp_path / "unknown.jsonl", lines)
    code, out, err = run(capsys, "eval", str(path), "--json")
    assert code == 2
    assert str(path) in err and "line 2" in err and "membership-fees" in err
    assert "Traceback" not in out + err
    assert out == ""


def test_eval_rejects_bad_json_naming_file_and_line(capsys, tmp_path):
    lines = case_lines(CASES)
    lines.insert(2, "")  # blank lines are skipped but still counted
    lines[3] = '{"query": "天気", "expected": []'
    path = write_cases(tmp_path / "bad.jsonl", lines)
    code, out, err = run(capsys, "eval", str(path), "--json")
    assert code == 2
    assert str(path) in err and "line 4" in err and "bad JSON" in err
    assert "Traceback" not in out + err
    assert out == ""


def test_eval_rejects_a_line_without_query_naming_file_and_line(capsys, tmp_path):
    lines = case_lines(CASES)
    lines[0] = json.dumps({"question": "パスワードを忘れました", "expected": ["password-reset"]}, ensure_ascii=False)
    path = write_cases(tmp_path / "noquery.jsonl", lines)
    code, out, err = run(capsys, "eval", str(path), "--json")
    assert code == 2
    assert str(path) in err and "line 1" in err and "'query'" in err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("content", ["", "\n\n   \n"], ids=["empty", "blank-lines"])
def test_eval_rejects_a_file_without_questions(capsys, tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "eval", str(path), "--json")
    assert code == 2
    assert str(path) in err and "no questions" in err
    assert "Traceback" not in out + err


def test_eval_reports_a_missing_file(capsys, tmp_path):
    path = tmp_path / "missing.jsonl"
    code, out, err = run(capsys, "eval", str(path), "--json")
    assert code == 2
    assert str(path) in err and "not found" in err
    assert "Traceback" not in out + err


def test_eval_reports_each_category_of_a_file_that_names_them(capsys, tmp_path):
    lines = [json.dumps({**case, "category": "plain" if i < 2 else "other"}, ensure_ascii=False)
             for i, case in enumerate(CASES)]
    code, out, _ = run(capsys, "eval", str(write_cases(tmp_path / "q.jsonl", lines)), "--json")
    assert code == 0
    by_category = json.loads(out)["by_category"]
    assert set(by_category) == {"plain", "other"}
    assert by_category["plain"]["queries"] == 2 and by_category["plain"]["in_scope_answered_correctly"] == 1.0
    assert by_category["other"]["out_of_scope"] == 1 and by_category["other"]["wrong_answers_in_scope"] == 1


def test_eval_curve_answers_less_and_never_more_wrongly_as_the_threshold_rises(capsys, tmp_path):
    lines = [json.dumps(case, ensure_ascii=False) for case in CASES]
    code, out, _ = run(capsys, "eval", str(write_cases(tmp_path / "q.jsonl", lines)), "--json", "--curve")
    assert code == 0
    curve = json.loads(out)["curve"]
    thresholds = [row["answer_threshold"] for row in curve]
    assert thresholds == sorted(thresholds) and len(curve) >= 5
    answered = [row["answered_correctly"] for row in curve]
    wrong = [row["wrong_answers"] for row in curve]
    assert answered == sorted(answered, reverse=True) and wrong == sorted(wrong, reverse=True)
    code, text, _ = run(capsys, "eval", str(tmp_path / "q.jsonl"), "--curve")
    assert "answer_threshold" in text


def test_eval_counts_a_message_of_two_questions_offered_only_when_both_are_shown(capsys, tmp_path):
    cases = [
        {"query": "パスワードを忘れてしまったのと、メルマガも止めたいです", "expected": ["password-reset", "newsletter-dm-stop"]},
        {"query": "パスワードを忘れました", "expected": ["password-reset", "withdrawal"]},
        {"query": "メルマガを止めたい", "expected": ["newsletter-dm-stop"]},
    ]
    code, out, _ = run(capsys, "eval", str(write_cases(tmp_path / "q.jsonl", case_lines(cases))), "--json")
    assert code == 0
    report = json.loads(out)
    first = report["results"][0]
    assert {first["faq_id"], *first["also"]} == {"password-reset", "newsletter-dm-stop"}
    assert report["metrics"]["several_expected_all_offered"] == 0.5
