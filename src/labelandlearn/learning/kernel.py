"""A support vector machine with an RBF kernel on the embedding block, as an ensemble member.

In ``linear+knn`` the linear model draws one hyperplane and the neighbours' vote looks at 10
texts. An RBF-kernel SVM adds a smooth non-linear boundary drawn from all training texts. It
trains on the rows the neighbours keep (the embedding block, centred and scaled to unit length),
one binary SVM per class against the rest, or a single one for two classes. Each SVM's decision
values are mapped to probabilities by Platt scaling, a logistic curve fitted on decision values
from a stratified k-fold split of the training rows, and the per-class probabilities are
normalised to sum to one.

Measured on the 5,515 deduplicated Ethereum tweets (5-fold cross-validation on three fold
splits, C 1, gamma 1): the SVM alone scored 0.833 useful-vs-useless and 0.720 3-class
macro-F1. Given a fifth of the vote next to ``tfidf-embedding-knn-centred``, it lifted that
recipe from 0.839 to 0.841 and from 0.727 to 0.736. It gained on each of five fold splits,
two of which played no part in choosing C and the weight (docs/benchmarks.md, "An RBF-kernel
member"). Fitting took 5.4 s for two classes on 5,000 rows of 384 columns and 13.6 s
for three, on 2 cores. libsvm's training time grows faster than the number of rows (between
its square and its cube), so it uses a stratified sample of about ``max_rows`` rows.

Decision values are computed here with numpy rather than by scikit-learn's ``SVC``, so that
one float32 matrix product against the union of all support vectors serves every class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC

from labelandlearn.errors import ValidationError

# Query rows per kernel block; bounds the (rows x support vectors) matrix in memory.
_QUERY_BATCH = 2048
# Platt's logistic curve is fitted almost unregularised: it has two parameters and thousands
# of decision values.
_PLATT_C = 1e4


class RbfKernelMember:
    """One-vs-rest RBF-kernel SVMs with Platt-scaled probabilities, on dense rows.

    ``fit`` leaves ``fitted_`` False when some class has fewer than ``platt_folds`` rows,
    because Platt scaling then has no held-out decision values. ``linear+knn`` predicts
    without the member until a later fit succeeds.
    """

    def __init__(
        self,
        C: float = 1.0,
        gamma: float = 1.0,
        platt_folds: int = 3,
        max_rows: int = 5000,
        random_state: int = 0,
    ) -> None:
        if C <= 0 or gamma <= 0:
            raise ValidationError(f"kernel C and gamma must be positive, got C={C}, gamma={gamma}")
        if platt_folds < 2:
            raise ValidationError(f"kernel platt_folds must be at least 2, got {platt_folds}")
        self.C = C
        self.gamma = gamma
        self.platt_folds = platt_folds
        self.max_rows = max_rows
        self.random_state = random_state
        self.fitted_ = False

    def fit(self, rows: np.ndarray, y: np.ndarray, classes: np.ndarray) -> Self:
        """Train on dense ``rows`` with labels ``y``. Probability columns follow ``classes``."""
        self.fitted_ = False

        rows = np.asarray(rows, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        if y.size > self.max_rows:
            keep = self._sample(y)
            rows, y = rows[keep], y[keep]

        counts = np.array([(y == c).sum() for c in classes])
        if classes.size < 2 or counts.min() < self.platt_folds:
            return self

        positives = classes[1:] if classes.size == 2 else classes
        targets = [(y == c).astype(np.int64) for c in positives]
        support: dict[int, None] = {}
        machines = []
        platt = np.zeros((len(targets), 2))
        for index, target in enumerate(targets):
            platt[index] = self._platt(rows, target)
            machine = self._svc().fit(rows, target)
            machines.append(machine)
            support.update(dict.fromkeys(machine.support_.tolist()))

        # One matrix of dual coefficients over the union of support vectors, one column per
        # machine, with zeros where a row is no support vector of that machine.
        union = np.array(sorted(support), dtype=np.int64)
        position = {row: i for i, row in enumerate(union.tolist())}
        dual = np.zeros((union.size, len(targets)), dtype=np.float32)
        intercept = np.zeros(len(targets))
        for index, machine in enumerate(machines):
            at = [position[row] for row in machine.support_.tolist()]
            dual[at, index] = machine.dual_coef_[0]
            intercept[index] = machine.intercept_[0]

        self.classes_ = np.asarray(classes, dtype=np.int64)
        self.support_vectors_ = rows[union]
        self.dual_coef_ = dual
        self.intercept_ = intercept
        self.platt_ = platt
        self.fitted_ = True
        return self

    def _sample(self, y: np.ndarray) -> np.ndarray:
        """Return sorted row indices: about ``max_rows`` rows, each class in its share.

        Each class keeps at least ``platt_folds`` rows (all of them when it has fewer), so
        sampling never leaves a class too small for Platt scaling.
        """
        rng = np.random.default_rng(self.random_state)
        share = self.max_rows / y.size
        keep = []
        for label in np.unique(y):
            members = np.flatnonzero(y == label)
            size = min(members.size, max(self.platt_folds, round(members.size * share)))
            keep.append(rng.choice(members, size=size, replace=False))
        return np.sort(np.concatenate(keep))

    def _svc(self) -> SVC:
        return SVC(C=self.C, kernel="rbf", gamma=self.gamma, class_weight="balanced")

    def _platt(self, rows: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Return (slope, intercept) of the logistic curve on held-out decision values."""
        decision = np.zeros(target.size)
        splitter = StratifiedKFold(
            n_splits=self.platt_folds, shuffle=True, random_state=self.random_state
        )
        for train, test in splitter.split(rows, target):
            machine = self._svc().fit(rows[train], target[train])
            decision[test] = machine.decision_function(rows[test])
        curve = LogisticRegression(C=_PLATT_C).fit(decision[:, None], target)
        return np.array([curve.coef_[0, 0], curve.intercept_[0]])

    def decision_function(self, rows: np.ndarray) -> np.ndarray:
        """Return one column of SVM decision values per binary machine."""
        rows = np.asarray(rows, dtype=np.float32)
        support = self.support_vectors_
        support_norms = (support * support).sum(axis=1)
        out = np.empty((rows.shape[0], self.dual_coef_.shape[1]))
        for start in range(0, rows.shape[0], _QUERY_BATCH):
            batch = rows[start : start + _QUERY_BATCH]
            # ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b, one matrix product for the whole batch.
            squared = (batch * batch).sum(axis=1)[:, None] + support_norms
            squared -= 2.0 * (batch @ support.T)
            np.maximum(squared, 0.0, out=squared)
            kernel = np.exp(-self.gamma * squared)
            out[start : start + batch.shape[0]] = kernel @ self.dual_coef_ + self.intercept_
        return out

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Return probabilities with columns in ``classes_`` order."""
        if not self.fitted_:
            raise ValidationError(
                "the kernel member is not fitted: fit it on at least "
                f"{self.platt_folds} rows of each class"
            )
        scores = self.decision_function(rows) * self.platt_[:, 0] + self.platt_[:, 1]
        positive = 0.5 * (1.0 + np.tanh(0.5 * scores))
        if self.classes_.size == 2:
            return np.column_stack([1.0 - positive[:, 0], positive[:, 0]])
        totals = positive.sum(axis=1, keepdims=True)
        totals[totals == 0.0] = 1.0
        return positive / totals

    # ----------------------------------------------------------------- state

    def get_params(self) -> dict[str, Any]:
        return {
            "C": self.C,
            "gamma": self.gamma,
            "platt_folds": self.platt_folds,
            "max_rows": self.max_rows,
            "random_state": self.random_state,
        }

    def get_arrays(self) -> dict[str, np.ndarray]:
        if not self.fitted_:
            return {}
        return {
            "classes": self.classes_,
            "support_vectors": self.support_vectors_,
            "dual_coef": self.dual_coef_,
            "intercept": self.intercept_,
            "platt": self.platt_,
        }

    @classmethod
    def from_state(cls, params: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        member = cls(**params)
        if "support_vectors" in arrays:
            member.classes_ = np.asarray(arrays["classes"], dtype=np.int64)
            member.support_vectors_ = np.asarray(arrays["support_vectors"], dtype=np.float32)
            member.dual_coef_ = np.asarray(arrays["dual_coef"], dtype=np.float32)
            member.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64)
            member.platt_ = np.asarray(arrays["platt"], dtype=np.float64)
            machines = 1 if member.classes_.size == 2 else member.classes_.size
            if member.dual_coef_.shape != (member.support_vectors_.shape[0], machines):
                raise ValueError("the kernel member's coefficients do not match its vectors")
            member.fitted_ = True
        return member
