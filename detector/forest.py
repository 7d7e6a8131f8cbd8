"""A fitted isolation forest as plain arrays, scored with NumPy.

scikit-learn fits the forest (:meth:`Trees.of`); scoring it needs only each tree's
splits and leaves. Importing scikit-learn takes 3-4 s and about 90 MB (it pulls in
SciPy), which `score` paid on every run and `serve` held for its whole life, so the
fitted trees are kept as arrays and walked here. :meth:`Trees.anomaly` returns exactly
what ``-IsolationForest.score_samples`` returns (tests/test_forest.py holds it equal over
random forests and inputs): the same float32 comparisons, the same leaf terms, summed
tree by tree in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sklearn.ensemble import IsolationForest

FORMAT: Final = "trovewatch-trees-1"
ROWS_PER_BLOCK: Final = 512  # rows walked through all trees at once (fits the CPU cache)


@dataclass(frozen=True)
class Trees:
    """Every tree's nodes in one set of arrays; tree ``t``'s root is ``roots[t]``.

    A leaf points to itself on both sides, with an infinite threshold, so walking
    ``depth`` steps from the roots lands every row on its leaf in every tree.
    """

    feature: npt.NDArray[np.int32]
    threshold: npt.NDArray[np.float32]  # rounded down: x <= it exactly when x <= the split
    children: npt.NDArray[np.int32]  # node n's left child at 2n, right at 2n + 1
    leaf_depth: npt.NDArray[np.float64]  # the path length a row ending at a leaf adds
    roots: npt.NDArray[np.int32]
    depth: int
    denominator: float  # trees x the average path length of a tree's sample

    @classmethod
    def of(cls, forest: IsolationForest) -> Trees:
        """The fitted ``forest``'s trees, with the per-tree terms scikit-learn itself scores
        with (its private ``_decision_path_lengths`` and ``_average_path_length_per_tree``:
        a release that changes them fails training loudly, or tests/test_forest.py)."""
        if forest.n_features_in_ != len(forest.estimators_features_[0]):
            raise ValueError("a forest fitted on a subset of features per tree is not supported")
        features, thresholds, children, leaf_depths, roots = [], [], [], [], []
        offset = 0
        for estimator, path_lengths, average_lengths in zip(
            forest.estimators_,
            forest._decision_path_lengths,
            forest._average_path_length_per_tree,
            strict=True,
        ):
            tree = estimator.tree_
            nodes = np.arange(tree.node_count)
            leaf = tree.children_left == -1
            left = np.where(leaf, nodes, tree.children_left) + offset
            right = np.where(leaf, nodes, tree.children_right) + offset
            features.append(np.where(leaf, 0, tree.feature))
            thresholds.append(np.where(leaf, np.inf, tree.threshold))
            children.append(np.column_stack([left, right]).ravel())
            leaf_depths.append(path_lengths + average_lengths - 1.0)
            roots.append(offset)
            offset += tree.node_count
        # every tree is grown from max_samples_ rows: its root's average path length is
        # the one scikit-learn normalises by
        root_average = forest._average_path_length_per_tree[0][0]
        return cls(
            feature=np.concatenate(features).astype(np.int32),
            threshold=_float32_below(np.concatenate(thresholds)),
            children=np.concatenate(children).astype(np.int32),
            leaf_depth=np.concatenate(leaf_depths).astype(np.float64),
            roots=np.asarray(roots, dtype=np.int32),
            depth=max(estimator.tree_.max_depth for estimator in forest.estimators_),
            denominator=float(len(forest.estimators_) * root_average),
        )

    def anomaly(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``-score_samples``: in (0, 1], higher for rows isolated in fewer splits."""
        rows = np.ascontiguousarray(features, dtype=np.float32)
        if np.isnan(rows).any():
            raise ValueError("feature vectors must not hold NaN")
        depths = np.zeros(len(rows))
        for start in range(0, len(rows), ROWS_PER_BLOCK):
            depths[start : start + ROWS_PER_BLOCK] = self._depths(
                rows[start : start + ROWS_PER_BLOCK]
            )
        # a forest of one training row has no depth at all: scikit-learn then says 0.5
        ratio = np.divide(
            depths, self.denominator, out=np.ones_like(depths), where=self.denominator != 0
        )
        return np.asarray(2 ** (-ratio), dtype=np.float64)

    def _depths(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Each row's path lengths summed over the trees, tree after tree.

        ``np.take`` rather than fancy indexing: it is several times faster on 1-d arrays.
        """
        count = len(rows)
        values = rows.T.ravel()  # feature f of row r at f * count + r
        offsets = self.feature * np.int32(count)
        row = np.arange(count, dtype=np.int32)[None, :]
        nodes = np.repeat(self.roots[:, None], count, axis=1)  # trees x rows
        for _ in range(self.depth):
            right = np.take(values, np.take(offsets, nodes) + row) > np.take(self.threshold, nodes)
            nodes = np.take(self.children, (nodes << 1) | right)
        total = np.zeros(count)
        for per_tree in np.take(self.leaf_depth, nodes):
            total += per_tree
        return total


def _float32_below(splits: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """The largest float32 at or below each split. Rows are compared as float32, as
    scikit-learn compares them, and a float32 ``x`` is <= ``split`` exactly when it is
    <= the largest float32 not above ``split``."""
    rounded = splits.astype(np.float32)
    over = rounded.astype(np.float64) > splits
    rounded[over] = np.nextafter(rounded[over], np.float32(-np.inf))
    return rounded
