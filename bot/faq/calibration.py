"""Turn the matcher's raw similarities into calibrated probabilities.

Raw similarities do not mean the same on every question: a long message that contains the right
question scores low, a short off-topic question that shares one FAQ word scores high. Two small
logistic models, fitted on team-written question sets of more than one FAQ corpus, read a few
corpus-independent signals of the best candidate (its score, its margin over the runner-up, how
much of the question the FAQ covers, how much of it the corpus has never seen, how much nearer it
is to an unanswered question, how many of its nearest phrasings are the FAQ's …) and give:

- ``answer``: the probability that the best candidate is the right answer;
- ``relevant``: the probability that the question is in scope at all (a right answer in the top 3).

The slow path, when the semantic model is there, reads three more signals (the semantic score of
the best candidate, its lead over the semantically best other one, and whether the two views agree)
with models of their own. The coefficients live in ``calibration.json`` (lexical) and
``calibration_semantic.json`` beside this module and are refitted with ``jsug-bot faq calibrate``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
SEMANTIC_CALIBRATION_FILE = Path(__file__).with_name("calibration_semantic.json")
FEATURES = (
    "score",
    "margin",
    "runner_up_ratio",
    "chars",
    "words",
    "reading",
    "answer",
    "centroid",
    "fuzzy",
    "unseen",
    "coverage",
    "length",
    "unanswered_lead",
    "neighbours",
)
SEMANTIC_FEATURES = (*FEATURES, "semantic", "semantic_margin", "semantic_agrees")


class CalibrationError(ValueError):
    """The calibration file is missing, unreadable or does not fit this version of the matcher."""


@dataclass(frozen=True)
class LogisticModel:
    coef: tuple[float, ...]
    intercept: float

    def probability(self, z: np.ndarray) -> float:
        return 1.0 / (1.0 + math.exp(-(float(np.dot(self.coef, z)) + self.intercept)))


@dataclass(frozen=True)
class Calibration:
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    answer: LogisticModel
    relevant: LogisticModel
    trained_on: tuple[str, ...] = ()
    features: tuple[str, ...] = FEATURES

    def probabilities(self, features: Sequence[float]) -> tuple[float, float]:
        z = (np.asarray(features, dtype=float) - self.mean) / self.scale
        return self.answer.probability(z), self.relevant.probability(z)

    def save(self, path: Path = CALIBRATION_FILE) -> None:
        fields = {name: value for name, value in asdict(self).items() if name != "features"}
        data = {"features": list(self.features), **fields}
        path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def load_calibration(path: Path = CALIBRATION_FILE, features: tuple[str, ...] = FEATURES) -> Calibration:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalibrationError(f"{path}: not found; run `jsug-bot faq calibrate`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{path}: unreadable ({exc})") from None
    if tuple(data.get("features", ())) != features:
        raise CalibrationError(f"{path}: made for other features; run `jsug-bot faq calibrate` again")
    return Calibration(
        mean=tuple(data["mean"]),
        scale=tuple(data["scale"]),
        answer=LogisticModel(tuple(data["answer"]["coef"]), data["answer"]["intercept"]),
        relevant=LogisticModel(tuple(data["relevant"]["coef"]), data["relevant"]["intercept"]),
        trained_on=tuple(data.get("trained_on", ())),
        features=features,
    )


def fit(
    rows: np.ndarray, correct: np.ndarray, relevant: np.ndarray, trained_on: Sequence[str],
    features: tuple[str, ...] = FEATURES,
) -> Calibration:
    """Fit both models on feature rows and their labels (1 = right top answer / in scope)."""
    from sklearn.linear_model import LogisticRegression

    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale == 0] = 1.0
    z = (rows - mean) / scale

    def model(labels: np.ndarray) -> LogisticModel:
        fitted = LogisticRegression(C=1.0, max_iter=2000).fit(z, labels)
        return LogisticModel(tuple(float(c) for c in fitted.coef_[0]), float(fitted.intercept_[0]))

    return Calibration(
        tuple(float(m) for m in mean), tuple(float(s) for s in scale), model(correct), model(relevant), tuple(trained_on),
        features,
    )
