"""The fast path (pre-rendered pieces joined per reader) equals rendering the whole email,
HTML and plain text; its links and tokens equal reverse() and signing.dumps."""

import html
import json

import pytest
import time_machine
from django.urls import reverse

from digest.emails import absolute_url
from digest.ranking import RankedPaper
from digest.rendering import DigestRenderer
from tests.digest.builders import built_edition
from subscriptions import tokens
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
def test_assembled_digest_is_byte_identical_to_the_whole_render(reasons):
    PaperFactory(title=HOSTILE, abstract=HOSTILE, organization=HOSTILE, author_names=[HOSTILE])
    edition = built_edition()
    subscriber = SubscriberFactory(email='o"brien&co+<x>@example.org', interests=HOSTILE)
    renderer = DigestRenderer(edition)
    ranked = ranked_papers(edition, reasons)

    with time_machine.travel("2026-12-01 06:00:00Z", tick=False):  # tokens carry the time
        assembled = renderer.render(subscriber, ranked)
        whole = renderer.render_whole(subscriber, ranked)

    assert assembled.html == whole.html
    assert assembled.text == whole.text
    assert "<script>" not in assembled.html
    assert subscriber.email in assembled.text
    for reason in reasons:
        assert " ".join(f"Why: {reason}".split()[:3]) in assembled.text


@pytest.mark.parametrize("breaking", ["\r\n", "\r", "\n\r"])
def test_a_title_with_a_carriage_return_is_assembled_as_the_whole_render_writes_it(breaking):
    """A title edited in the admin may hold a CRLF; the HTML parser behind the CSS inliner
    reads each CR as LF: the preheader and a why-line naming the title, written per reader,
    must come out the same."""
    title = f"Line one{breaking}line two & more"
    PaperFactory(title="Leading paper", upvotes=10_000)
    PaperFactory(title=title, upvotes=5_000)
    edition = built_edition()
    subscriber = SubscriberFactory()
    renderer = DigestRenderer(edition)
    ranked = ranked_papers(edition, [f"like “{title}”, which you liked", "in cs.LG", "c"])
    assert title in ranked[1].paper.title  # named by the preheader

    with time_machine.travel("2026-12-01 06:00:00Z", tick=False):  # tokens carry the time
        assembled = renderer.render(subscriber, ranked)
        for_json = renderer.render(subscriber, ranked, for_json=True)
        whole = renderer.render_whole(subscriber, ranked)

    assert assembled.html == whole.html
    assert json.loads(b'"' + for_json.html.escaped + b'"') == whole.html
    assert assembled.text == whole.text
    assert "\r" not in assembled.html


def test_a_reused_renderer_gives_each_reader_their_own_links():
    edition = built_edition()
    renderer = DigestRenderer(edition)
    first, second = SubscriberFactory.create_batch(2)
    ranked = ranked_papers(edition, ["a", "b"])

    with time_machine.travel("2026-12-01 06:00:00Z", tick=False):  # tokens carry the time
        html_first = renderer.render(first, ranked).html
        html_second = renderer.render(second, ranked).html
        whole_second = renderer.render_whole(second, ranked).html

    assert html_first != html_second
    assert whole_second == html_second


def test_readers_sharing_papers_at_other_ranks_and_for_other_reasons_each_get_their_own_items():
    edition = built_edition()
    renderer = DigestRenderer(edition)
    readers = SubscriberFactory.create_batch(4)
    forward = ranked_papers(edition, ["diffusion models", "in cs.LG", "robotics"])
    backward = [r._replace(reason=reason) for r, reason in zip(reversed(forward), ["robotics", "x", "in cs.LG"])]
    digests = [forward, backward, forward[:2], backward[1:]]

    with time_machine.travel("2026-12-01 06:00:00Z", tick=False):  # tokens carry the time
        assembled = [renderer.render(reader, ranked) for reader, ranked in zip(readers, digests)]
        whole = [renderer.render_whole(reader, ranked) for reader, ranked in zip(readers, digests)]

    assert [(a.html, a.text) for a in assembled] == [(w.html, w.text) for w in whole]


@pytest.mark.parametrize("site_url", ["https://papers.example", 'https://papers.example/p?a=1&b="x"'])
def test_links_and_shared_preheaders_are_escaped_as_the_whole_render_escapes_them(site_url, settings):
    settings.SITE_URL = site_url  # a site whose own URL needs escaping gets its links escaped
    PaperFactory(title=HOSTILE)
    edition = built_edition()
    renderer = DigestRenderer(edition)
    readers = SubscriberFactory.create_batch(3)
    ranked = ranked_papers(edition, ["a", "b", "c"])  # one preheader, with the hostile title, for all

    with time_machine.travel("2026-12-01 06:00:00Z", tick=False):  # tokens carry the time
        assembled = [renderer.render(reader, ranked) for reader in readers]
        for_json = [renderer.render(reader, ranked, for_json=True) for reader in readers]
        whole = [renderer.render_whole(reader, ranked) for reader in readers]

    assert [(a.html, a.text) for a in assembled] == [(w.html, w.text) for w in whole]
    assert [json.loads(b'"' + j.html.escaped + b'"') for j in for_json] == [w.html for w in whole]
    assert [json.loads(b'"' + j.text.escaped + b'"') for j in for_json] == [w.text for w in whole]
    assert all(site_url.replace("&", "&amp;").replace('"', "&quot;") in w.html for w in whole)


def test_every_token_is_text_no_escaping_changes():
    from digest.rendering import UNCHANGED_BY_ESCAPING

    makers = [tokens.TokenMaker(purpose) for purpose in (tokens.FEEDBACK, tokens.VIEW, tokens.UNSUBSCRIBE)]
    for subscriber in SubscriberFactory.create_batch(20):
        for maker in makers:
            assert UNCHANGED_BY_ESCAPING(maker.make(subscriber, e=123456))
            assert UNCHANGED_BY_ESCAPING(maker.make(subscriber))


def test_links_built_from_reversed_prefixes_equal_reverse():
    edition = built_edition()
    subscriber = SubscriberFactory()
    renderer = DigestRenderer(edition)

    with time_machine.travel("2026-12-01 06:00:00Z", tick=False):
        links = renderer.links.for_reader(subscriber, edition)
        view = tokens.make_token(subscriber, tokens.VIEW, e=edition.pk)
        unsubscribe = tokens.make_token(subscriber, tokens.UNSUBSCRIBE)
        vote = tokens.make_token(subscriber, tokens.FEEDBACK, e=edition.pk)

    assert links["view_url"] == absolute_url(reverse("digest:view_in_browser", args=[view]))
    assert links["unsubscribe_url"] == absolute_url(reverse("subscriptions:unsubscribe", args=[unsubscribe]))
    assert f"{links['vote_base']}/7/down/" == absolute_url(
        reverse("digest:vote", args=[vote, 7, "down"])
    )


@pytest.mark.parametrize("purpose", [tokens.FEEDBACK, tokens.VIEW, tokens.FEED, tokens.UNSUBSCRIBE, tokens.PREFERENCES])
def test_token_maker_makes_the_tokens_signing_dumps_makes(purpose):
    subscriber = SubscriberFactory()
    maker = tokens.TokenMaker(purpose)

    with time_machine.travel("2026-12-01 06:00:00Z", tick=False):
        fast = maker.make(subscriber, e=12)
        reference = tokens.make_token(subscriber, purpose, e=12)

    assert fast == reference
    assert tokens.read_token(fast, purpose).subscriber == subscriber
    with pytest.raises(tokens.InvalidToken):
        tokens.read_token(fast, tokens.UNSUBSCRIBE if purpose != tokens.UNSUBSCRIBE else tokens.FEED)


@pytest.mark.parametrize("extra", [{}, {"e": 2**40}, {"e": 3, "p": 7}, {"e": "12"}, {"e": True}, {"x": None}])
@pytest.mark.parametrize("secret", ["0123456789abcdef", 'q"\\é\u2028✓-long-secret'])
def test_token_maker_writes_the_payload_json_dumps_writes(extra, secret):
    subscriber = SubscriberFactory(token_secret=secret)
    maker = tokens.TokenMaker(tokens.FEEDBACK)

    with time_machine.travel("2026-12-01 06:00:00Z", tick=False):
        assert maker.make(subscriber, **extra) == tokens.make_token(subscriber, tokens.FEEDBACK, **extra)


@pytest.mark.parametrize("edition_id", [77, 2**40, True, "12"])
@pytest.mark.parametrize("secret", ["0123456789abcdef", 'q"\\é\u2028✓-long-secret'])
def test_a_digests_two_payloads_are_the_token_values_of_each_link(edition_id, secret):
    subscriber = SubscriberFactory(token_secret=secret)

    with time_machine.travel("2026-12-01 06:00:00Z", tick=False):
        both = tokens.digest_token_values(subscriber, edition_id)
        assert both == (tokens.token_value(subscriber, e=edition_id), tokens.token_value(subscriber))
        with_edition = tokens.TokenMaker(tokens.VIEW).sign(both[0])
        assert with_edition == tokens.make_token(subscriber, tokens.VIEW, e=edition_id)
    assert tokens.read_token(with_edition, tokens.VIEW).extra == {"e": edition_id}


def test_token_maker_refuses_confirmation_tokens():
    with pytest.raises(ValueError):
        tokens.TokenMaker(tokens.CONFIRM)


def test_the_html_body_is_ascii_with_every_character_kept_as_a_reference():
    PaperFactory(title="Über-fast 👍 diffusion “quoted”")
    edition = built_edition()
    subscriber = SubscriberFactory(email="zoë@example.org")
    renderer = DigestRenderer(edition)
    ranked = ranked_papers(edition, ["like “Über-fast”, which you liked"] * edition.entries.count())

    digest = renderer.render(subscriber, ranked)

    assert digest.html.isascii()
    shown = html.unescape(digest.html)
    assert "Über-fast 👍 diffusion “quoted”" in shown
    assert "zoë@example.org" in shown and "👍 More like this" in shown
    assert "Über-fast 👍 diffusion “quoted”" in digest.text


def test_bodies_for_a_json_payload_decode_to_the_bodies_themselves():
    hostile = HOSTILE + ' back\\slash "q" tab\t ctrl\x01 Über 👍'
    PaperFactory(title=hostile, abstract=hostile, organization=hostile)
    edition = built_edition()
    subscriber = SubscriberFactory(email='o"brien\\x@example.org', interests=hostile)
    renderer = DigestRenderer(edition)
    ranked = ranked_papers(edition, [f"matches your interests: {hostile}", "in cs.LG"])

    with time_machine.travel("2026-12-01 06:00:00Z", tick=False):  # tokens carry the time
        plain = renderer.render(subscriber, ranked)
        encoded = renderer.render(subscriber, ranked, for_json=True)

    assert json.loads(b'"' + encoded.html.escaped + b'"') == plain.html
    assert json.loads(b'"' + encoded.text.escaped + b'"') == plain.text
    # Written as json.dumps writes them, ASCII: "Über 👍" in a text body does not widen a payload.
    assert encoded.html.escaped == json.dumps(plain.html)[1:-1].encode("ascii")
    assert encoded.text.escaped == json.dumps(plain.text)[1:-1].encode("ascii")
    assert encoded.text.escaped.isascii() and not plain.text.isascii()


def test_text_said_to_need_no_escaping_is_left_as_it_is_by_every_escaping():
    from digest.rendering import HTML_BODY, TEXT_BODY, UNCHANGED_BY_ESCAPING

    escapings = [  # each escaping, and the character as its body writes it unescaped (JSON: bytes)
        (escape, body.unescaped)
        for body in (HTML_BODY, TEXT_BODY, HTML_BODY.for_json(), TEXT_BODY.for_json())
        for escape in (body.escape_text, body.escape_attribute)
    ]
    every_character = [chr(c) for c in range(0x2FF)] + ["👍", "\u2028"]
    for character in every_character:
        unchanged = all(escape(character) == written(character) for escape, written in escapings if
                        written is str or character.isascii())
        assert bool(UNCHANGED_BY_ESCAPING(character)) == unchanged, repr(character)
    link = "https://paperboy.example/u/eyJzIjo0Miwia2V5IjoiYWJjIn0:1tXyZ:Ab-_c9/"
    assert UNCHANGED_BY_ESCAPING(link) and UNCHANGED_BY_ESCAPING("")


def test_ranks_past_the_ones_made_ahead_are_written_as_numbers_in_each_body():
    from digest.rendering import HTML_BODY, BodyPieces

    plain, for_json = BodyPieces(None, HTML_BODY), BodyPieces(None, HTML_BODY.for_json())

    assert [plain.rank(n) for n in (1, 20, 23, 21)] == ["1", "20", "23", "21"]
    assert [for_json.rank(n) for n in (1, 20, 23, 21)] == [b"1", b"20", b"23", b"21"]
