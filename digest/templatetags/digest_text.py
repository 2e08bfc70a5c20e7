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


@register.filter
def after_rank(text, indent=4):
    """``paragraph`` for text that starts on the line of an item's rank (" 9. "): the rank
    takes the first line's indent, and the lines after it are indented under the text."""
    return paragraph(text, indent)[int(indent):]
