"""Inter-annotator agreement on nominal labels: Cohen's kappa, Fleiss' kappa, Krippendorff's alpha.

Every function takes a label matrix, items x annotators, holding label codes ``0 .. k-1`` and
``-1`` (or NaN) where an annotator did not label an item, or the same ratings in long form as
:class:`Ratings`. The long form scales to projects with hundreds of annotators, where the dense
matrix is mostly empty. Functions are pure: no database, no I/O.

References: Cohen (1960), Fleiss (1971) "Measuring nominal scale agreement among many raters",
Krippendorff (2011) "Computing Krippendorff's alpha-reliability".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from labelandlearn.errors import ValidationError

logger = logging.getLogger(__name__)

MISSING = -1

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Ratings:
    """Ratings in long form: one entry per (item, annotator) with a label code.

    ``item``, ``annotator`` and ``label`` are parallel arrays of indices into
    ``range(n_items)``, ``range(n_annotators)`` and ``range(n_labels)``.
    """

    item: IntArray
    annotator: IntArray
    label: IntArray
    n_items: int
    n_annotators: int
    n_labels: int

    @classmethod
    def from_matrix(cls, matrix: NDArray[np.generic], n_labels: int | None = None) -> Ratings:
        """Build ratings from a dense items x annotators matrix; -1 or NaN marks missing."""
        array = np.asarray(matrix)
        if array.ndim != 2:
            raise ValidationError(
                f"label matrix has {array.ndim} dimensions; pass items x annotators (2)"
            )
        if np.issubdtype(array.dtype, np.floating):
            present = ~np.isnan(array) & (array >= 0)
        else:
            present = array >= 0
        items, annotators = np.nonzero(present)
        labels = array[items, annotators].astype(np.int64)
        return cls.from_codes(items, annotators, labels, array.shape[0], array.shape[1], n_labels)

    @classmethod
    def from_codes(
        cls,
        item: NDArray[np.integer],
        annotator: NDArray[np.integer],
        label: NDArray[np.integer],
        n_items: int | None = None,
        n_annotators: int | None = None,
        n_labels: int | None = None,
    ) -> Ratings:
        """Build ratings from parallel code arrays, checking ranges and duplicate pairs."""
        items = np.asarray(item, dtype=np.int64)
        annotators = np.asarray(annotator, dtype=np.int64)
        labels = np.asarray(label, dtype=np.int64)
        if not items.shape == annotators.shape == labels.shape or items.ndim != 1:
            raise ValidationError(
                f"item, annotator and label arrays have shapes {items.shape}, "
                f"{annotators.shape}, {labels.shape}; pass three 1-D arrays of one length"
            )
        n_items = _size(items, n_items, "item")
        n_annotators = _size(annotators, n_annotators, "annotator")
        n_labels = _size(labels, n_labels, "label")

        order = np.lexsort((annotators, items))
        items, annotators, labels = items[order], annotators[order], labels[order]
        repeated = (items[1:] == items[:-1]) & (annotators[1:] == annotators[:-1])
        if repeated.any():
            first = int(np.argmax(repeated))
            raise ValidationError(
                f"annotator {annotators[first]} labels item {items[first]} more than once; "
                "keep one label per (item, annotator)"
            )
        return cls(items, annotators, labels, n_items, n_annotators, n_labels)

    def to_matrix(self) -> IntArray:
        """Return the dense items x annotators matrix with -1 for missing labels."""
        matrix = np.full((self.n_items, self.n_annotators), MISSING, dtype=np.int64)
        matrix[self.item, self.annotator] = self.label
        return matrix

    def counts(self) -> IntArray:
        """Return the items x labels matrix of how many annotators chose each label."""
        table = np.zeros((self.n_items, self.n_labels), dtype=np.int64)
        np.add.at(table, (self.item, self.label), 1)
        return table


def _size(codes: IntArray, given: int | None, what: str) -> int:
    if codes.size and codes.min() < 0:
        raise ValidationError(f"{what} codes contain {codes.min()}; codes must be 0 or more")
    needed = int(codes.max()) + 1 if codes.size else 0
    if given is None:
        return needed
    if given < needed:
        raise ValidationError(
            f"{what} code {needed - 1} is out of range for {given} {what}s; pass a larger count"
        )
    return given


RatingsLike = Ratings | NDArray[np.generic]


def as_ratings(data: RatingsLike, n_labels: int | None = None) -> Ratings:
    """Return ``data`` as :class:`Ratings`, converting a dense matrix."""
    if isinstance(data, Ratings):
        return data
    return Ratings.from_matrix(data, n_labels)


# Cohen's kappa


@dataclass(frozen=True)
class PairwiseKappa:
    """Cohen's kappa for every annotator pair that shares at least ``min_shared`` items.

    ``kappa`` and ``shared`` are n_annotators x n_annotators and symmetric. ``kappa`` is NaN
    on the diagonal, for pairs below ``min_shared`` and where kappa is undefined (both
    annotators gave one and the same label to every shared item, so chance agreement is 1).
    """

    kappa: FloatArray
    shared: IntArray
    pairs: int
    mean: float | None
    min: float | None
    max: float | None


def _pair_instances(ratings: Ratings) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Return (annotator a, annotator b, label of a, label of b) for every item both labelled.

    Each unordered pair appears once per shared item, with ``a < b``. Entries are sorted by
    item then annotator, so pairs within an item are ``s`` entries apart for s = 1, 2, ...
    """
    item, annotator, label = ratings.item, ratings.annotator, ratings.label
    first_a: list[IntArray] = []
    first_b: list[IntArray] = []
    label_a: list[IntArray] = []
    label_b: list[IntArray] = []
    max_raters = int(np.bincount(item).max()) if item.size else 0
    for shift in range(1, max_raters):
        same = item[:-shift] == item[shift:]
        if not same.any():
            break
        first_a.append(annotator[:-shift][same])
        first_b.append(annotator[shift:][same])
        label_a.append(label[:-shift][same])
        label_b.append(label[shift:][same])
    if not first_a:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    return (
        np.concatenate(first_a),
        np.concatenate(first_b),
        np.concatenate(label_a),
        np.concatenate(label_b),
    )


def _kappa_from_confusion(confusion: FloatArray) -> FloatArray:
    """Return Cohen's kappa of each k x k confusion matrix in a (pairs, k, k) stack."""
    total = confusion.sum(axis=(1, 2))
    observed = np.trace(confusion, axis1=1, axis2=2) / total
    expected = (confusion.sum(axis=2) * confusion.sum(axis=1)).sum(axis=1) / total**2
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = (observed - expected) / (1.0 - expected)
    kappa[np.isclose(expected, 1.0)] = np.nan
    return kappa


def cohen_kappa(labels_a: NDArray[np.integer], labels_b: NDArray[np.integer]) -> float:
    """Return Cohen's kappa of two equally long label-code arrays; NaN when undefined."""
    a = np.asarray(labels_a, dtype=np.int64)
    b = np.asarray(labels_b, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValidationError(
            f"label arrays have shapes {a.shape} and {b.shape}; pass two non-empty 1-D "
            "arrays of one length"
        )
    k = int(max(a.max(), b.max())) + 1
    confusion = np.zeros((k, k))
    np.add.at(confusion, (a, b), 1.0)
    return float(_kappa_from_confusion(confusion[np.newaxis])[0])


def pairwise_cohen_kappa(
    data: RatingsLike, *, min_shared: int = 1, n_labels: int | None = None
) -> PairwiseKappa:
    """Compute Cohen's kappa for each annotator pair on the items both labelled."""
    ratings = as_ratings(data, n_labels)
    n, k = ratings.n_annotators, max(ratings.n_labels, 1)
    a, b, label_a, label_b = _pair_instances(ratings)

    pair_code = a * n + b
    pair_ids, pair_index = np.unique(pair_code, return_inverse=True)
    confusion = np.zeros((pair_ids.size, k, k))
    np.add.at(confusion, (pair_index, label_a, label_b), 1.0)
    shared_counts = confusion.sum(axis=(1, 2)).astype(np.int64)

    kappa = np.full((n, n), np.nan)
    shared = np.zeros((n, n), dtype=np.int64)
    rows, cols = pair_ids // n, pair_ids % n
    shared[rows, cols] = shared_counts
    shared[cols, rows] = shared_counts

    enough = shared_counts >= min_shared
    values = np.full(pair_ids.size, np.nan)
    if enough.any():
        values[enough] = _kappa_from_confusion(confusion[enough])
    kappa[rows, cols] = values
    kappa[cols, rows] = values

    defined = values[~np.isnan(values)]
    return PairwiseKappa(
        kappa=kappa,
        shared=shared,
        pairs=int(defined.size),
        mean=float(defined.mean()) if defined.size else None,
        min=float(defined.min()) if defined.size else None,
        max=float(defined.max()) if defined.size else None,
    )


# Fleiss' kappa


@dataclass(frozen=True)
class FleissKappa:
    """Fleiss' kappa overall and per label (category-wise kappa, Fleiss 1971).

    Items with fewer than two ratings are left out. ``equal_raters`` is False when the
    remaining items have different numbers of ratings; see :func:`fleiss_kappa`.
    """

    kappa: float | None
    per_label: list[float | None]
    items: int
    raters_min: int
    raters_max: int
    equal_raters: bool


def fleiss_kappa(data: RatingsLike, *, n_labels: int | None = None) -> FleissKappa:
    """Compute Fleiss' kappa and the category-wise kappa of each label.

    Fleiss defined kappa for a fixed number ``n`` of ratings per item. When the number
    ``n_i`` differs between items, each item's observed agreement uses its own ``n_i``
    (pairs agreeing out of ``n_i (n_i - 1)``) and the label proportions pool all ratings.
    With equal counts this is exactly Fleiss' formula, and ``equal_raters`` records which case
    applied. Krippendorff's alpha is defined for unequal counts from the start.
    """
    ratings = as_ratings(data, n_labels)
    table = ratings.counts().astype(np.float64)
    raters = table.sum(axis=1)
    keep = raters >= 2
    table, raters = table[keep], raters[keep]
    n_labels_total = ratings.n_labels
    if table.shape[0] == 0:
        return FleissKappa(None, [None] * n_labels_total, 0, 0, 0, True)

    proportions = table.sum(axis=0) / raters.sum()
    per_item = ((table * (table - 1.0)).sum(axis=1)) / (raters * (raters - 1.0))
    observed = float(per_item.mean())
    expected = float((proportions**2).sum())
    kappa = None if np.isclose(expected, 1.0) else (observed - expected) / (1.0 - expected)

    # Category-wise kappa: 1 - disagreement on label j / its chance value p_j q_j.
    disagreement = (table * (raters[:, None] - table) / (raters * (raters - 1.0))[:, None]).sum(
        axis=0
    ) / table.shape[0]
    chance = proportions * (1.0 - proportions)
    per_label: list[float | None] = [
        None if np.isclose(chance[j], 0.0) else float(1.0 - disagreement[j] / chance[j])
        for j in range(n_labels_total)
    ]
    return FleissKappa(
        kappa=kappa,
        per_label=per_label,
        items=int(table.shape[0]),
        raters_min=int(raters.min()),
        raters_max=int(raters.max()),
        equal_raters=bool(raters.min() == raters.max()),
    )


# Krippendorff's alpha


def _alpha_from_counts(table: FloatArray) -> float | None:
    """Return nominal Krippendorff's alpha from an items x labels count table."""
    raters = table.sum(axis=1)
    keep = raters >= 2
    table, raters = table[keep], raters[keep]
    if table.shape[0] == 0:
        return None
    # Coincidence matrix: each ordered pair of ratings within an item weighs 1 / (m_u - 1).
    weights = 1.0 / (raters - 1.0)
    coincidence = (table * weights[:, None]).T @ table
    coincidence[np.diag_indices_from(coincidence)] -= (table * weights[:, None]).sum(axis=0)
    marginals = coincidence.sum(axis=1)
    total = marginals.sum()
    observed_disagreement = total - np.trace(coincidence)
    expected_disagreement = (total**2 - (marginals**2).sum()) / (total - 1.0)
    if np.isclose(expected_disagreement, 0.0):
        return None
    return float(1.0 - observed_disagreement / expected_disagreement)


@dataclass(frozen=True)
class KrippendorffAlpha:
    """Nominal Krippendorff's alpha overall and per label (label versus all other labels)."""

    alpha: float | None
    per_label: list[float | None]
    items: int
    ratings: int


def krippendorff_alpha(data: RatingsLike, *, n_labels: int | None = None) -> KrippendorffAlpha:
    """Compute nominal Krippendorff's alpha; items with fewer than two ratings are left out.

    Missing ratings are allowed anywhere. The per-label figure is alpha on the binary
    question "label j or not" (one versus rest), so it is defined even with many labels.
    """
    ratings = as_ratings(data, n_labels)
    table = ratings.counts().astype(np.float64)
    raters = table.sum(axis=1)
    paired = raters >= 2
    per_label: list[float | None] = []
    for j in range(ratings.n_labels):
        binary = np.stack([table[:, j], raters - table[:, j]], axis=1)
        per_label.append(_alpha_from_counts(binary))
    return KrippendorffAlpha(
        alpha=_alpha_from_counts(table),
        per_label=per_label,
        items=int(paired.sum()),
        ratings=int(raters[paired].sum()),
    )


# Agreement with the majority of the other annotators


@dataclass(frozen=True)
class MajorityAgreement:
    """Per annotator: how often their label equals the majority label of the others.

    ``compared`` counts items with at least one other rating and a unique majority among the
    others; ``ties`` counts items left out because the others were tied. ``rate`` is
    ``agreed / compared``, NaN when nothing was compared.
    """

    rate: FloatArray
    agreed: IntArray
    compared: IntArray
    ties: IntArray


def majority_agreement(data: RatingsLike, *, n_labels: int | None = None) -> MajorityAgreement:
    """Compare each rating with the leave-one-out majority of the item's other ratings."""
    ratings = as_ratings(data, n_labels)
    table = ratings.counts()
    others = table[ratings.item].copy()
    entries = np.arange(ratings.item.size)
    others[entries, ratings.label] -= 1

    top = others.max(axis=1)
    has_others = top > 0
    unique_top = (others == top[:, None]).sum(axis=1) == 1
    majority = others.argmax(axis=1)

    compared_mask = has_others & unique_top
    tie_mask = has_others & ~unique_top
    agreed_mask = compared_mask & (majority == ratings.label)

    n = ratings.n_annotators
    agreed = np.bincount(ratings.annotator[agreed_mask], minlength=n)
    compared = np.bincount(ratings.annotator[compared_mask], minlength=n)
    ties = np.bincount(ratings.annotator[tie_mask], minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(compared > 0, agreed / np.maximum(compared, 1), np.nan)
    return MajorityAgreement(rate=rate, agreed=agreed, compared=compared, ties=ties)


def majority_labels(data: RatingsLike, *, n_labels: int | None = None) -> IntArray:
    """Return each item's majority label code, or -1 for an unlabelled or tied item."""
    table = as_ratings(data, n_labels).counts()
    if table.shape[1] == 0:
        return np.full(table.shape[0], MISSING, dtype=np.int64)
    top = table.max(axis=1)
    unique_top = (table == top[:, None]).sum(axis=1) == 1
    return np.where((top > 0) & unique_top, table.argmax(axis=1), MISSING).astype(np.int64)
