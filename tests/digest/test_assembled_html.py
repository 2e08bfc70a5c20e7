"""The fast path (pre-rendered pieces joined per reader) equals rendering the whole email."""

import pytest

from digest.ranking import RankedPaper
from digest.rendering import DigestRenderer
from tests.digest.builders import built_edition
from tests.factories import PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert("x")</script> & \xa0 "quoted" <b>bold</b> \'single\''


def ranked_papers(edition, reasons):
    papers = [e.paper for e in edition.entries.select_related("paper").order_by("rank")]
    return [RankedPaper(p, 1.0 - i / 10, 0.5, reason) for i, (p, reason) in enumerate(zip(papers, reasons))]


@pytest.mark.parametrize(
    "reasons",
    [
        ["matches your interests: diffusion models", "trending: 57 upvotes, +20 today"],
        [f"matches your interests: {HOSTILE}", f"like “{HOSTILE}”, which you liked", "in cs.LG"],
        [],
    ],
)
def test_assembled_digest_html_is_byte_identical_to_the_whole_render(reasons):
    PaperFactory(title=HOSTILE, abstract=HOSTILE, organization=HOSTILE, author_names=[HOSTILE])
    edition = built_edition()
    subscriber = SubscriberFactory(email='o"brien&co+<x>@example.org', interests=HOSTILE)
    renderer = DigestRenderer(edition)
    ranked = ranked_papers(edition, reasons)

    assembled = renderer.render(subscriber, ranked).html
    whole = renderer.render_whole(subscriber, ranked)

    assert assembled == whole
    assert "<script>" not in assembled


def test_a_reused_renderer_gives_each_reader_their_own_links():
    edition = built_edition()
    renderer = DigestRenderer(edition)
    first, second = SubscriberFactory.create_batch(2)
    ranked = ranked_papers(edition, ["a", "b"])

    html_first = renderer.render(first, ranked).html
    html_second = renderer.render(second, ranked).html

    assert html_first != html_second
    assert renderer.render_whole(second, ranked) == html_second
