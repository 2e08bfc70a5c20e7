"""Filters for the plain-text emails: wrapped, indented paragraphs."""

import textwrap

from django import template

register = template.Library()

TEXT_WIDTH = 72


@register.filter
def paragraph(text, indent=3):
    """``text`` wrapped at 72 columns, every line indented by ``indent`` spaces."""
    pad = " " * int(indent)
    return textwrap.fill(" ".join(str(text).split()), width=TEXT_WIDTH, initial_indent=pad,
                         subsequent_indent=pad, break_long_words=False, break_on_hyphens=False)
