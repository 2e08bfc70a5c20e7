"""The project's templates, read as files."""

import re
from pathlib import Path

from django.conf import settings

# Django's ``{# … #}`` comment ends on its own line: one spread over two is output as text.
UNCLOSED_COMMENT = re.compile(r"\{#(?!.*#\})")


def template_files():
    """The project's templates: its templates directory and its apps' own."""
    for directory in [*settings.TEMPLATES[0]["DIRS"], *Path(settings.BASE_DIR).glob("*/templates")]:
        yield from (path for path in Path(directory).rglob("*") if path.suffix in {".html", ".txt", ".xml"})


def test_every_one_line_comment_closes_on_its_line():
    files = list(template_files())
    assert {"digest.html", "timezone_select.html"} <= {path.name for path in files}
    unclosed = [f"{path.name}:{n}" for path in files
                for n, line in enumerate(path.read_text().splitlines(), start=1) if UNCLOSED_COMMENT.search(line)]
    assert unclosed == []
