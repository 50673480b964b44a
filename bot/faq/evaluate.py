"""``jsug-bot eval``: run a file of questions with their expected FAQ ids and measure the matcher.

A wrong confident answer is the worst outcome, so the report counts wrong answers separately from
questions that were only suggested or passed on.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from bot.faq.corpus import CorpusError, read_text
from bot.faq.index import FaqIndex
from bot.faq.matcher import Outcome, match


@dataclass(frozen=True)
class EvalCase:
    query: str
    expected: tuple[str, ...]


def load_cases(path: Path, known_ids: set[str] | None = None) -> list[EvalCase]:
    lines = read_text(path).splitlines()
    cases: list[EvalCase] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"on line {number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(path, f"bad JSON: {exc.msg}", where) from None
        if not isinstance(raw, dict) or not isinstance(raw.get("query"), str):
            raise CorpusError(path, "needs a text field 'query'", where)
        expected = raw.get("expected", [])
        if not isinstance(expected, list) or not all(isinstance(e, str) for e in expected):
            raise CorpusError(path, "'expected' must be a list of FAQ ids ([] for out of scope)", where)
        unknown = [e for e in expected if known_ids is not None and e not in known_ids]
        if unknown:
            raise CorpusError(path, f"expected id(s) not in the corpus: {', '.join(unknown)}", where)
        cases.append(EvalCase(raw["query"], tuple(expected)))
    if not cases:
        raise CorpusError(path, "holds no questions")
    return cases


def _reciprocal_rank(ranked: list[str], expected: tuple[str, ...]) -> float:
    for rank, faq_id in enumerate(ranked, start=1):
        if faq_id in expected:
            return 1.0 / rank
    return 0.0


def evaluate(index: FaqIndex, cases: list[EvalCase]) -> dict[str, object]:
    results: list[dict[str, object]] = []
    started = time.perf_counter()
    outcomes = [match(index, case.query) for case in cases]
    elapsed = time.perf_counter() - started

    in_scope = correct = wrong_in = wrong_out = oos = oos_fallback = top3 = suggested = 0
    reciprocal = 0.0
    for case, result in zip(cases, outcomes, strict=True):
        ranked = result.ranked[:10]
        answered = result.outcome is Outcome.ANSWER
        if case.expected:
            in_scope += 1
            correct += answered and result.faq_id in case.expected
            wrong_in += answered and result.faq_id not in case.expected
            suggested += result.outcome is Outcome.SUGGEST
            top3 += any(faq_id in case.expected for faq_id in ranked[:3])
            reciprocal += _reciprocal_rank(ranked, case.expected)
        else:
            oos += 1
            wrong_out += answered
            oos_fallback += result.outcome is Outcome.FALLBACK
        results.append(
            {
                "query": case.query,
                "expected": list(case.expected),
                "outcome": result.outcome.value,
                "faq_id": result.faq_id,
                "score": round(result.score, 4),
                "suggestions": result.suggestions,
                "ranked": ranked,
            }
        )
    total = len(cases)
    answers = correct + wrong_in + wrong_out
    metrics = {
        "queries": total,
        "in_scope": in_scope,
        "out_of_scope": oos,
        "in_scope_answered_correctly": _share(correct, in_scope),
        "in_scope_suggested": _share(suggested, in_scope),
        "wrong_answers": wrong_in + wrong_out,
        "wrong_answers_in_scope": wrong_in,
        "wrong_answers_out_of_scope": wrong_out,
        "wrong_answer_rate": _share(wrong_in + wrong_out, total),
        "answer_precision": _share(correct, answers),
        "out_of_scope_fallback": _share(oos_fallback, oos),
        "top3_recall": _share(top3, in_scope),
        "mrr": round(reciprocal / in_scope, 4) if in_scope else None,
        "queries_per_second": round(total / elapsed, 1) if elapsed else None,
    }
    return {"metrics": metrics, "results": results}


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
