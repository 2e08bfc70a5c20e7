"""Turning paper and interest texts into vectors: the pluggable step of the ranking.

An embedder has two methods, both returning one L2-normalised row per text
(a SciPy sparse matrix or a NumPy array):

* ``fit_transform(texts)``: learn from one edition's papers and embed them;
* ``transform(texts)``: embed more texts (interests, liked papers) in that space.

settings.DIGEST_EMBEDDER names the class. TF-IDF is the default, and what the
tests use; ``SentenceTransformerEmbedder`` swaps in a sentence-embedding model
for installations that have the ``sentence-transformers`` package and a model.
"""

import re

import numpy as np
from django.conf import settings
from django.utils.module_loading import import_string
from scipy import sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.preprocessing import normalize

# Words of letters and digits: a hyphen parts them, so "LLM-based" holds "llm" and
# "vision-language" reads as "vision language".
WORD = re.compile(r"[a-z0-9]+")
# scikit-learn's English stop words but the ones ML titles use as topics ("fire detection",
# "part segmentation", "next token prediction", "few-shot", "whole slide images", "system").
TOPIC_WORDS = frozenset({
    "amount", "back", "bill", "bottom", "call", "computer", "describe", "detail", "due", "eight", "eleven",
    "empty", "fifteen", "fifty", "fill", "find", "fire", "first", "five", "forty", "found", "four", "front",
    "full", "go", "hundred", "interest", "last", "many", "mill", "move", "name", "next", "nine", "one", "part",
    "several", "show", "side", "six", "sixty", "system", "ten", "thick", "thin", "third", "three", "top",
    "twelve", "twenty", "two", "whole", "few",
})
STOP_WORDS = ENGLISH_STOP_WORDS - TOPIC_WORDS


def paper_text(paper):
    """Title (twice: it says most), abstract and AI keywords."""
    keywords = " ".join(paper.ai_keywords or [])
    return f"{paper.title}. {paper.title}. {paper.abstract} {keywords}"


def word_stem(word):
    """A deliberately tiny stemmer for plurals: "models" and "model", "policies" and "policy",
    "processes" and "process" are one term ("corpus", "analysis", "class" stay as they are)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def terms(text):
    """The content words of ``text``, stemmed: used to say which interests a paper matches.
    A plural is stemmed before the stop words are left out ("systems" and "system" alike)."""
    return [stem for stem in map(word_stem, WORD.findall(text.lower())) if stem not in STOP_WORDS]


class TfidfEmbedder:
    """TF-IDF over words and word pairs, fitted on one edition's papers."""

    def __init__(self):
        self.vectorizer = TfidfVectorizer(
            analyzer=self.analyze, sublinear_tf=True, min_df=1, dtype=np.float32
        )

    @staticmethod
    def analyze(text):
        words = terms(text)
        return words + [f"{a} {b}" for a, b in zip(words, words[1:])]

    def fit_transform(self, texts):
        texts = list(texts)
        try:
            return normalize(self.vectorizer.fit_transform(texts))
        except ValueError:  # no text has a word to go by (titles in other scripts): nothing is alike
            self.vectorizer = None
            return self.nothing_alike(texts)

    def transform(self, texts):
        if self.vectorizer is None:
            return self.nothing_alike(list(texts))
        return normalize(self.vectorizer.transform(texts))

    @staticmethod
    def nothing_alike(texts):
        return sparse.csr_matrix((len(texts), 1), dtype=np.float32)


class SentenceTransformerEmbedder:
    """A sentence-embedding model (settings.DIGEST_SENTENCE_MODEL) instead of TF-IDF.

    Needs the optional ``sentence-transformers`` package and the model files;
    nothing is fitted per edition, the model is loaded once per process.
    """

    _models = {}

    def __init__(self):
        from sentence_transformers import SentenceTransformer

        name = settings.DIGEST_SENTENCE_MODEL
        if name not in self._models:
            self._models[name] = SentenceTransformer(name)
        self.model = self._models[name]

    def transform(self, texts):
        vectors = self.model.encode(list(texts), normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32)

    fit_transform = transform


def load_embedder():
    return import_string(settings.DIGEST_EMBEDDER)()


def similarities(rows, columns):
    """Cosine similarities (rows × columns) of two sets of unit vectors, as a dense array.

    ``columns`` (a reader's few profile vectors) is made dense first: a sparse
    matrix times a dense one is much faster than a sparse-sparse product.
    """
    dense_columns = columns.T.toarray() if sparse.issparse(columns) else np.asarray(columns).T
    return np.asarray(rows @ dense_columns)
