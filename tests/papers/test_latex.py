"""LaTeX in titles and abstracts made readable, the prose around it left as written."""

import pytest

from papers.sources.base import clean_prose
from papers.sources.latex import readable_latex


@pytest.mark.parametrize(
    ("written", "readable"),
    [
        (r"Reflected Schr\"odinger Bridge", "Reflected Schrödinger Bridge"),
        (r"Erd\H{o}s, Garc\'{\i}a, Cort\'es and {\L}ojasiewicz", "Erdős, García, Cortés and Łojasiewicz"),
        (r"na\"{\i}ve Ba{\"y}es, Pe\~na", "naïve Baÿes, Peña"),
        (r"by 5\% \& more", "by 5% & more"),
        (r"is {\em persistent homology}, which", "is persistent homology, which"),
        (r"Lion (Evo\textbf{Lved Sign Momentum})", "Lion (EvoLved Sign Momentum)"),
        (r"\emph{not} \textit{this}", "not this"),
        (r"\partial_t u = \Delta u in \Omega\times(0,\infty)", "∂_t u = Δ u in Ω×(0,∞)"),
        (r"with {\delta} and \varepsilon", "with δ and ε"),
        (r"$\alpha$-divergence", "α-divergence"),
        (r"$\epsilon$-greedy with $k \geq 2$ arms, $\ell_2$ loss and $O(n^2)$ time",
         "ϵ-greedy with k ≥ 2 arms, ℓ_2 loss and O(n^2) time"),
    ],
)
def test_latex_pieces_are_written_as_the_characters_they_stand_for(written, readable):
    assert readable_latex(written) == readable


@pytest.mark.parametrize(
    "prose",
    [
        "boosts accuracy by up to 2% on ImageNet and saves 5x",  # a LaTeX comment, were it LaTeX
        "Q&A for R&D",
        "see https://example.org/~user/x_y and a~b",
        "costs $5 per hour and $10 later",  # prices, not math
        "from $5 to $20^",
        r"an author's own \aka, a path C:\data\new and a \LaTeX logo",  # commands standing for no character
        r"\cite{x}, \url{https://example.org} and \item",
        "<b>Bold</b> & <i>plain</i>",
        r"reach $\mathcal{O}(n^{2} \log n)$ cost, $\epsilon = 10^{-3}$ and $\frac12$",  # longer math
        "plain title",
    ],
)
def test_prose_and_commands_that_stand_for_no_character_are_left_as_written(prose):
    assert readable_latex(prose) == prose


def test_a_title_is_cleaned_then_read_and_composed():
    assert clean_prose("  Schr\\\"odinger\n  bridges  ") == "Schrödinger bridges"
    assert clean_prose("Caf\\'e", max_length=3) == "Caf"
    assert clean_prose(None) is None and clean_prose("   ") is None
