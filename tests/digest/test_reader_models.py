"""A reader's model: its rows cut from the edition's matrix, fitted by liblinear as the estimator fits them."""

import logging

import numpy as np
import pytest
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from digest import reader_models
from digest.reader_models import direct_fit_works, fit_logistic, model_rows, unsorted_csr


@pytest.fixture(autouse=True)
def check_the_entry_point_again():
    direct_fit_works.cache_clear()
    yield
    direct_fit_works.cache_clear()


def problem(rng, rows=120, columns=50, positives=15):
    dense = rng.random((rows, columns)) * (rng.random((rows, columns)) < 0.2)
    labels = np.r_[np.ones(positives), np.zeros(rows - positives)]
    weights = np.r_[np.ones(positives), rng.choice([1.0, 0.5, 0.1], rows - positives)]
    return dense, labels, weights


def estimator(features, labels, weights, C):
    model = LogisticRegression(C=C, solver="liblinear").fit(features, labels, sample_weight=weights)
    return model.coef_[0], model.intercept_[0]


@pytest.mark.parametrize("make", [unsorted_csr, sparse.csr_matrix, np.array], ids=["unsorted rows", "csr", "dense"])
def test_liblinear_called_directly_fits_exactly_what_the_estimator_fits(make):
    rng = np.random.default_rng(3)
    assert direct_fit_works()
    for C in (4.0, 0.5):
        dense, labels, weights = problem(rng)
        coefficients, intercept = fit_logistic(make(dense), labels, weights, C)
        expected_coefficients, expected_intercept = estimator(make(dense), labels, weights, C)
        assert np.array_equal(coefficients, expected_coefficients) and intercept == expected_intercept


def test_a_fit_leaves_its_inputs_as_they_were_but_for_the_order_of_each_rows_columns():
    dense, labels, weights = problem(np.random.default_rng(4))
    features = unsorted_csr(dense)
    fit_logistic(features, labels, weights, 4.0)
    assert np.array_equal(features.toarray(), dense)
    assert np.array_equal(labels, problem(np.random.default_rng(4))[1])
    assert np.array_equal(weights, problem(np.random.default_rng(4))[2])


class ChangedEntryPoint:
    """liblinear's entry point as a later scikit-learn might have it."""

    def __init__(self, train_wrap):
        self.train_wrap = train_wrap

    @staticmethod
    def set_verbosity_wrap(verbosity):
        pass


def different_answer(features, *args):
    return np.zeros((1, features.shape[1] + 1)), np.array([1])


def other_arguments(*args):
    raise TypeError("train_wrap() takes exactly 13 positional arguments (12 given)")


@pytest.mark.parametrize("entry_point", [None, ChangedEntryPoint(other_arguments), ChangedEntryPoint(different_answer)],
                         ids=["missing", "other arguments", "other answer"])
def test_when_liblinears_entry_point_is_not_as_expected_the_estimator_fits_and_a_warning_says_so(
    entry_point, monkeypatch, caplog
):
    monkeypatch.setattr(reader_models, "_liblinear", entry_point)
    dense, labels, weights = problem(np.random.default_rng(5))

    with caplog.at_level(logging.WARNING, logger="digest.reader_models"):
        coefficients, intercept = fit_logistic(sparse.csr_matrix(dense), labels, weights, 4.0)
        fit_logistic(sparse.csr_matrix(dense), labels, weights, 4.0)

    expected_coefficients, expected_intercept = estimator(sparse.csr_matrix(dense), labels, weights, 4.0)
    assert np.array_equal(coefficients, expected_coefficients) and intercept == expected_intercept
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "fitted through LogisticRegression" in warnings[0]


def plain_model_rows(edition, labelled, n_positive, unlabelled):
    """The reader's rows the plain scipy way: stack, cut out the positives' terms, add the unlabelled rows."""
    stacked = sparse.vstack(labelled).tocsr()
    terms = np.unique(stacked[:n_positive].nonzero()[1])
    candidates = edition[:, terms].tocsr().astype(np.float64)
    parts = [stacked[:, terms].astype(np.float64)] + ([candidates[unlabelled]] if len(unlabelled) else [])
    return sparse.vstack(parts).tocsr(), candidates


@pytest.mark.parametrize("unlabelled", [np.arange(0, 30, 2), np.arange(30), np.array([], dtype=np.intp)],
                         ids=["some", "all", "none"])
def test_a_readers_rows_are_the_stacked_rows_on_the_terms_of_the_positives(unlabelled):
    rng = np.random.default_rng(6)
    edition = sparse.csr_matrix(rng.random((30, 80)) * (rng.random((30, 80)) < 0.1)).astype(np.float32)
    outside = sparse.csr_matrix(rng.random((4, 80)) * (rng.random((4, 80)) < 0.1)).astype(np.float32)
    empty = sparse.csr_matrix((1, 80), dtype=np.float32)  # a phrase with no term in the edition's space
    labelled = [edition[3], outside[0], empty, edition[7], outside[1], edition[12], outside[2]]

    features, candidates = model_rows(edition.tocsc(), labelled, 4, unlabelled)

    expected_features, expected_candidates = plain_model_rows(edition, labelled, 4, unlabelled)
    for matrix, expected in ((features, expected_features), (candidates, expected_candidates)):
        assert matrix.dtype == np.float64 and matrix.shape == expected.shape
        assert np.array_equal(matrix.toarray(), expected.toarray())
        assert matrix.has_sorted_indices
