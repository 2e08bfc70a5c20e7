"""A reader's own model: its training rows cut from the edition's matrix, and its fit.

Readers with MODEL_MIN_LIKES likes are ranked by a logistic regression fitted
for them on the fly (``EditionRanker.model_probability``): a few hundred rows,
on the terms of what they liked. liblinear solves one in about a millisecond.
Around it, stacking the rows and cutting out the columns with scipy's indexing
took about 3 ms, and ``LogisticRegression.fit``'s checks, label encoding and
class weights 2–4 ms more, for every such reader in every digest. Here the rows
are joined from their arrays through a mask over the vocabulary, and the fit is
liblinear's own entry point, called as ``LogisticRegression(solver="liblinear")``
calls it: the same problem, the same solver, the same coefficients (tests
compare them bit for bit).

That entry point (``sklearn.svm._liblinear.train_wrap``) is scikit-learn's
internal function. It is checked once per process against the estimator on a
small problem; if it is missing, refuses the call or answers differently, every
fit goes through ``LogisticRegression`` and a warning says so.
"""

import logging
from functools import cache

import numpy as np
import sklearn
from scipy import sparse
from sklearn.linear_model import LogisticRegression

try:
    from sklearn.svm import _liblinear
except ImportError:  # moved or renamed in a later scikit-learn: the estimator does the fitting
    _liblinear = None

log = logging.getLogger(__name__)

# What LogisticRegression(solver="liblinear") passes to liblinear with its defaults (penalty "l2",
# tol 1e-4, max_iter 100, intercept_scaling 1, no class weights).
L2R_LR = 0  # liblinear's solver type: L2-regularised logistic regression, primal
TOLERANCE = 1e-4
MAX_ITERATIONS = 100
INTERCEPT_SCALING = 1.0
NO_CLASS_WEIGHTS = np.ones(2)
EPSILON = 0.1  # only read by liblinear's regression solvers


def fit_logistic(features, labels, weights, C):
    """(coefficients, intercept) of ``LogisticRegression(C=C, solver="liblinear")`` fitted on
    ``features`` (CSR or dense float64), ``labels`` (0.0 and 1.0) and ``weights``."""
    if direct_fit_works():
        return direct_fit(features, labels, weights, C)
    return estimator_fit(features, labels, weights, C)


def estimator_fit(features, labels, weights, C):
    # The inputs are built by the ranker, finite and of the right shapes: the checks of the
    # parameters are skipped.
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        model = LogisticRegression(C=C, solver="liblinear").fit(features, labels, sample_weight=weights)
    return model.coef_[0], model.intercept_[0]


def direct_fit(features, labels, weights, C):
    """``estimator_fit`` through liblinear's entry point. Where liblinear stops at MAX_ITERATIONS
    the estimator would also warn (ConvergenceWarning); the coefficients are the same."""
    is_sparse = sparse.issparse(features)
    if is_sparse:
        # The estimator fits the matrix in canonical form (its check for huge values sorts each
        # row's columns in place); liblinear sums each row in the order it is given.
        features.sum_duplicates()
    else:
        features = np.ascontiguousarray(features, dtype=np.float64)
    raw, _ = _liblinear.train_wrap(
        features, np.ascontiguousarray(labels, dtype=np.float64), is_sparse, L2R_LR, TOLERANCE,
        INTERCEPT_SCALING, C, NO_CLASS_WEIGHTS, MAX_ITERATIONS, 0, EPSILON,
        np.ascontiguousarray(weights, dtype=np.float64),
    )
    return raw[0, :-1], INTERCEPT_SCALING * raw[0, -1]


@cache
def direct_fit_works():
    """Whether liblinear's entry point, called directly, fits what the estimator fits (once per process)."""
    if _liblinear is not None:
        _liblinear.set_verbosity_wrap(0)  # liblinear prints each iteration unless told not to
    rng = np.random.default_rng(0)
    dense = rng.random((40, 30)) * (rng.random((40, 30)) < 0.5)
    labels = (np.arange(40) < 12).astype(np.float64)
    weights = np.r_[np.ones(12), np.full(28, 0.3)]
    try:
        for make in (unsorted_csr, np.array):
            direct = direct_fit(make(dense), labels, weights, 4.0)
            expected = estimator_fit(make(dense), labels, weights, 4.0)
            if not (np.array_equal(direct[0], expected[0]) and direct[1] == expected[1]):
                raise ValueError(f"coefficients differ: {direct} != {expected}")
    except Exception as exc:  # any failure of an internal function means: do not use it
        log.warning("readers' models fitted through LogisticRegression: liblinear's entry point %s (%s)",
                    "is missing" if _liblinear is None else "does not fit as the estimator does", exc)
        return False
    return True


def unsorted_csr(dense):
    """``dense`` as CSR with each row's columns in descending order, as an edition's TF-IDF rows come."""
    reversed_columns = sparse.csr_matrix(dense[:, ::-1])
    columns = dense.shape[1] - 1 - reversed_columns.indices
    return sparse.csr_matrix((reversed_columns.data, columns, reversed_columns.indptr), shape=dense.shape)


def model_rows(edition_columns, labelled, n_positive, unlabelled):
    """A reader's training matrix and the edition's matrix, both on the terms of the positives.

    ``edition_columns``: the edition's paper vectors, CSC. ``labelled``: one-row CSR matrices
    (each row's columns in order), the ``n_positive`` positives first. ``unlabelled``: the
    edition's rows to add after them, in order. Returns (features, candidates), CSR float64:
    the matrices that stacking the rows, cutting out the columns and stacking the edition's
    unlabelled rows after them gives. Only the edition is cut with scipy's indexing; the
    reader's rows are renumbered through a mask over the vocabulary and joined as arrays.
    """
    is_term = np.zeros(edition_columns.shape[1], dtype=bool)
    is_term[np.concatenate([row.indices for row in labelled[:n_positive]])] = True
    terms = np.flatnonzero(is_term)
    candidates = edition_columns[:, terms].tocsr().astype(np.float64)
    column_of = np.cumsum(is_term, dtype=np.int32) - 1
    indices = np.concatenate([row.indices for row in labelled])
    kept = is_term[indices]
    kept_per_row = np.bincount(np.repeat(np.arange(len(labelled)), [row.nnz for row in labelled])[kept],
                               minlength=len(labelled))
    per_paper = np.diff(candidates.indptr)
    taken = np.repeat(np.isin(np.arange(candidates.shape[0]), unlabelled), per_paper)
    features = sparse.csr_matrix(
        (
            np.concatenate([np.concatenate([row.data for row in labelled])[kept], candidates.data[taken]]),
            np.concatenate([column_of[indices[kept]], candidates.indices[taken]]),
            np.concatenate([[0], np.cumsum(np.concatenate([kept_per_row, per_paper[unlabelled]]))]),
        ),
        shape=(len(labelled) + len(unlabelled), len(terms)),
    )
    return features, candidates
