"""The LaTeX arXiv authors write in titles and abstracts, made readable.

An abstract is prose with some LaTeX in it: accents (``Schr\\"odinger``, ``Erd\\H{o}s``),
escaped characters (``5\\%``), text styles (``{\\em persistent homology}``,
``\\textbf{Lved}``), symbols (``\\Delta u``, ``\\partial_t``) and short inline math
(``$\\alpha$-divergence``, ``$k \\geq 2$``: symbols, letters, digits, sub- and superscripts,
no groups). Only those pieces are converted, each by pylatexenc's LaTeX-to-text converter.

Longer math (``$\\mathcal{O}(n^{2} \\log n)$``) is left as written, dollars and all: its
text would read worse than the LaTeX (pylatexenc runs ``n^{2} \\log`` into ``n^2log``). So
is the prose around the pieces, since a whole abstract read as LaTeX would lose everything
after a plain ``%`` ("up to 2% on ImageNet"), every ``&`` and the ``~`` of a URL; and so is
a command pylatexenc does not know (an author's own ``\\aka``) or one that does not stand
for a character.
"""

import re
from functools import lru_cache

from pylatexenc.latex2text import LatexNodes2Text, get_default_latex_context_db

PIECE_RE = re.compile(
    r"""
      \\[`'"^~=.](?:[a-zA-Z]|\{(?:[a-zA-Z]|\\i)\})                 # \"o, \'{e}, \"{\i}
    | \\[Hcvuk]\{(?:[a-zA-Z]|\\i)\}                                 # \H{o}, \c{c}
    | \{\\[`'"^~=.Hcvu]\s*(?:[a-zA-Z]|\\i)\}                        # {\'e}
    | \{\\(?:em|bf|it|tt|sc|rm|sl|sf)\s+[^{}$\\]*\}                  # {\em words}
    | \\(?:emph|text(?:bf|it|tt|sc|rm|sf|sl|up|normal)|underline)\{[^{}$\\]*\}   # \textbf{words}
    | \\[%&_#$]                                                     # 5\%
    | \$(?=[^$]*[\\^_])[^$\n]{1,200}?\$                              # $\alpha$, $x^2$: math, not prices
    | \{\\[a-zA-Z]+\}                                               # {\L}, {\delta}
    | \\[a-zA-Z]+(?![a-zA-Z])                                       # \Delta, \ss
    """,
    re.VERBOSE,
)
CONTROL_WORD_RE = re.compile(r"\{?\\([a-zA-Z]+)\}?")
COMMAND_IN_MATH_RE = re.compile(r"\\([a-zA-Z]+)")
LONGEST_SYMBOL = 2  # what a symbol command stands for: "Δ", "Ł", "ß"

to_text = LatexNodes2Text(math_mode="text", strict_latex_spaces=False)


def readable_latex(text):
    """``text`` with its LaTeX pieces written as the characters they stand for."""
    if text is None or ("\\" not in text and "$" not in text):
        return text
    return PIECE_RE.sub(lambda match: converted(match.group()), text)


@lru_cache(maxsize=4096)
def converted(piece):
    """One piece as text, or as written when it is a command that stands for no character."""
    control_word = CONTROL_WORD_RE.fullmatch(piece)
    if control_word and not is_symbol(control_word.group(1)):
        return piece
    if piece.startswith("$") and ("{" in piece or not all(map(is_symbol, COMMAND_IN_MATH_RE.findall(piece)))):
        return piece  # longer math: a group, or a command that is not a symbol (\frac, \log)
    try:
        text = to_text.latex_to_text(piece)
    except Exception:  # pylatexenc parses leniently; a piece it still refuses stays as written
        return piece
    return text if text.strip() else piece


@lru_cache(maxsize=1024)
def is_symbol(name):
    """Whether ``\\name`` is a command pylatexenc knows that stands for a character or two (its
    text is a plain string, not a pattern of its arguments nor a layout such as ``\\item``'s)."""
    text = getattr(get_default_latex_context_db().get_macro_spec(name), "simplify_repl", None)
    return isinstance(text, str) and 0 < len(text) <= LONGEST_SYMBOL and "%" not in text and not any(
        character.isspace() for character in text
    )
