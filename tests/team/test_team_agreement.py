"""Agreement formulas against hand-computed examples, scikit-learn and the shared datasets."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from labelandlearn.errors import ValidationError
from labelandlearn.team.agreement import (
    Ratings,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    majority_agreement,
    majority_labels,
    pairwise_cohen_kappa,
)
from shared_data import dataset_path

M = -1  # missing


def test_cohen_kappa_hand_example() -> None:
    # Agreement on 4 of 6 items, both annotators use each label 3 times:
    # p_o = 2/3, p_e = 1/2, kappa = (2/3 - 1/2) / (1/2) = 1/3.
    a = np.array([0, 0, 1, 1, 0, 1])
    b = np.array([0, 1, 1, 1, 0, 0])
    assert cohen_kappa(a, b) == pytest.approx(1 / 3)


def test_cohen_kappa_undefined_when_one_label() -> None:
    assert math.isnan(cohen_kappa(np.array([1, 1, 1]), np.array([1, 1, 1])))


def test_pairwise_kappa_matches_sklearn_with_missing() -> None:
    rng = np.random.default_rng(7)
    matrix = rng.integers(0, 3, size=(200, 5))
    truth = rng.integers(0, 3, size=200)
    matrix[:, 1] = np.where(rng.random(200) < 0.7, truth, matrix[:, 1])
    matrix[:, 2] = np.where(rng.random(200) < 0.7, truth, matrix[:, 2])
    matrix[rng.random((200, 5)) < 0.2] = M

    result = pairwise_cohen_kappa(matrix)

    for a in range(5):
        for b in range(a + 1, 5):
            both = (matrix[:, a] >= 0) & (matrix[:, b] >= 0)
            expected = cohen_kappa_score(matrix[both, a], matrix[both, b])
            assert result.kappa[a, b] == pytest.approx(expected, abs=1e-12)
            assert result.kappa[b, a] == pytest.approx(expected, abs=1e-12)
            assert result.shared[a, b] == both.sum()
    assert result.pairs == 10
    upper = result.kappa[np.triu_indices(5, k=1)]
    assert result.mean == pytest.approx(upper.mean())
    assert result.min == pytest.approx(upper.min())
    assert result.max == pytest.approx(upper.max())


def test_pairwise_kappa_min_shared_leaves_pairs_out() -> None:
    matrix = np.array([[0, 0, M], [1, 1, M], [0, 1, 0], [1, M, 1]])
    result = pairwise_cohen_kappa(matrix, min_shared=3)
    # Only annotators 0 and 1 share three items.
    assert result.pairs == 1
    assert result.shared[0, 2] == 2
    assert math.isnan(result.kappa[0, 2])
    assert result.kappa[0, 1] == pytest.approx(cohen_kappa_score([0, 1, 0], [0, 1, 1]))


def test_fleiss_kappa_binary_hand_example() -> None:
    # Counts per item (label 0, label 1): (3,0) (2,1) (1,2) (0,3); P = 2/3, Pe = 1/2.
    matrix = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 1], [1, 1, 1]])
    result = fleiss_kappa(matrix)
    assert result.kappa == pytest.approx(1 / 3)
    assert result.per_label == [pytest.approx(1 / 3), pytest.approx(1 / 3)]
    assert result.equal_raters
    assert result.items == 4


def test_fleiss_kappa_three_labels_hand_example() -> None:
    # Counts (3,0,0) (1,1,1) (0,2,1) (0,0,3): p = (4, 3, 5) / 12, P = 7/12, Pe = 25/72,
    # kappa = 17/47; category-wise 1 - sum n_ij (n - n_ij) / (N n (n-1) p_j q_j).
    matrix = np.array([[0, 0, 0], [0, 1, 2], [1, 1, 2], [2, 2, 2]])
    result = fleiss_kappa(matrix)
    assert result.kappa == pytest.approx(17 / 47)
    assert result.per_label[0] == pytest.approx(5 / 8)
    assert result.per_label[1] == pytest.approx(1 / 9)
    assert result.per_label[2] == pytest.approx(11 / 35)

    # Overall kappa is the p_j q_j weighted mean of the category-wise values.
    p = np.array([4, 3, 5]) / 12
    weights = p * (1 - p)
    weighted = (weights * np.array(result.per_label)).sum() / weights.sum()
    assert weighted == pytest.approx(result.kappa)


def test_fleiss_kappa_unequal_rater_counts() -> None:
    # Item 3 has one rating and is left out; items 0-2 have 3, 3 and 2 ratings.
    matrix = np.array([[0, 0, 0], [0, 1, 1], [1, 1, M], [0, M, M]])
    result = fleiss_kappa(matrix)
    assert not result.equal_raters
    assert result.items == 3
    assert (result.raters_min, result.raters_max) == (2, 3)
    # P_i = 1, 1/3, 1; proportions from all 8 ratings: p0 = p1 = 4/8.
    observed = (1 + 1 / 3 + 1) / 3
    expected = 0.5**2 + 0.5**2
    assert result.kappa == pytest.approx((observed - expected) / (1 - expected))


def test_fleiss_kappa_no_pairs() -> None:
    result = fleiss_kappa(np.array([[0, M], [M, 1]]))
    assert result.kappa is None
    assert result.items == 0


def test_krippendorff_alpha_hand_example() -> None:
    # Item 0: (0, 0); item 1: (0, 1, 1); item 2 has one rating and is left out.
    # Coincidences o00 = 2, o01 = o10 = 1, o11 = 1; n = 5, n0 = 3, n1 = 2:
    # alpha = 1 - (n - 1) * 2 / (n^2 - 9 - 4) = 1 - 8/12 = 1/3.
    matrix = np.array([[0, 0, M], [0, 1, 1], [M, M, 1]])
    result = krippendorff_alpha(matrix)
    assert result.alpha == pytest.approx(1 / 3)
    assert result.items == 2
    assert result.ratings == 5
    # With two labels, label-versus-rest is the same question as the whole.
    assert result.per_label == [pytest.approx(1 / 3), pytest.approx(1 / 3)]


def test_krippendorff_alpha_published_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal example:
    # 4 observers, 12 units, values 1-5 with gaps; alpha = 0.743.
    rows = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, M, M, M],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, M, 3],
        [M, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, M],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, M],
    ]
    matrix = np.array(rows).T
    result = krippendorff_alpha(matrix)
    assert result.alpha == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_per_label_one_vs_rest() -> None:
    matrix = np.array([[0, 0, 1], [1, 1, 1], [2, 2, 0], [2, 2, 2]])
    result = krippendorff_alpha(matrix)
    for label in range(3):
        binary = np.where(matrix == label, 1, 0)
        assert result.per_label[label] == pytest.approx(krippendorff_alpha(binary).alpha)


def test_majority_agreement_hand_example() -> None:
    matrix = np.array(
        [
            [0, 0, 1],  # annotators 0 and 1 see a tie among the others; 2 disagrees
            [1, 1, 1],  # everyone agrees
            [0, M, 0],  # 0 and 2 agree
            [1, 0, M],  # 0 and 1 disagree
        ]
    )
    result = majority_agreement(matrix)
    assert result.compared.tolist() == [3, 2, 3]
    assert result.agreed.tolist() == [2, 1, 2]
    assert result.ties.tolist() == [1, 1, 0]
    assert result.rate.tolist() == pytest.approx([2 / 3, 1 / 2, 2 / 3])


def test_majority_labels_ties_are_missing() -> None:
    matrix = np.array([[0, 0, 1], [0, 1, M], [M, M, M], [2, M, M]])
    assert majority_labels(matrix, n_labels=3).tolist() == [0, M, M, 2]


def test_ratings_round_trip_and_nan_missing() -> None:
    matrix = np.array([[0.0, np.nan], [1.0, 0.0]])
    ratings = Ratings.from_matrix(matrix)
    assert ratings.to_matrix().tolist() == [[0, M], [1, 0]]
    assert ratings.n_labels == 2


def test_ratings_reject_repeated_pair() -> None:
    with pytest.raises(ValidationError, match="more than once"):
        Ratings.from_codes(np.array([0, 0]), np.array([1, 1]), np.array([0, 1]))


def test_ratings_reject_out_of_range_label() -> None:
    with pytest.raises(ValidationError, match="out of range"):
        Ratings.from_codes(np.array([0]), np.array([0]), np.array([2]), n_labels=2)


def _ratings_from_long_csv(path: Path) -> Ratings:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    # md-agreement lists one annotator twice on one item with the same label; keep one.
    unique = {(row["row_id"], row["annotator_id"]): row["label"] for row in rows}
    annotators = {name: code for code, name in enumerate(sorted({a for _, a in unique}))}
    labels = {name: code for code, name in enumerate(sorted(set(unique.values())))}
    return Ratings.from_codes(
        np.array([int(row_id) for row_id, _ in unique]),
        np.array([annotators[annotator] for _, annotator in unique]),
        np.array([labels[label] for label in unique.values()]),
    )


def test_hs_brexit_published_figures() -> None:
    ratings = _ratings_from_long_csv(dataset_path("hs-brexit", "hs_brexit_annotations_long.csv"))
    cohen = pairwise_cohen_kappa(ratings)
    assert cohen.pairs == 15
    assert cohen.mean == pytest.approx(0.347, abs=5e-4)
    assert cohen.min == pytest.approx(0.199, abs=5e-4)
    assert cohen.max == pytest.approx(0.665, abs=5e-4)
    assert fleiss_kappa(ratings).kappa == pytest.approx(0.347, abs=5e-4)


def test_md_agreement_published_alpha() -> None:
    ratings = _ratings_from_long_csv(
        dataset_path("md-agreement", "md_agreement_annotations_long.csv")
    )
    assert ratings.n_annotators == 819
    assert krippendorff_alpha(ratings).alpha == pytest.approx(0.359, abs=5e-4)
