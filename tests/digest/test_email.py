"""The digest email: both parts, list headers, escaping, size."""

import email
import email.policy
import re
from datetime import date
from unittest import mock

import pytest
from django.template.loader import get_template

from digest.models import Delivery
from digest.ranking import EditionRanker
from digest.rendering import DigestRenderer, preheader, sentences, short_summary, subject_line
from digest.sending import send_edition_to
from tests.digest.builders import built_edition, papers_on_topics
from tests.factories import PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

HOSTILE_TITLE = '<script>alert("x")</script> & <b>Bold</b> claims'


def sent_digest(mailoutbox, **subscriber_fields):
    edition = built_edition(papers=papers_on_topics())
    subscriber = SubscriberFactory(**subscriber_fields)
    send_edition_to(edition, [subscriber.pk])
    assert len(mailoutbox) == 1
    return mailoutbox[0], subscriber


def html_part(message):
    return next(body for body, mime in message.alternatives if mime == "text/html")


def test_digest_has_list_unsubscribe_one_click_and_list_id_headers(mailoutbox, settings):
    message, _ = sent_digest(mailoutbox, interests="")
    headers = message.message()
    unsubscribe = headers["List-Unsubscribe"]
    assert unsubscribe.startswith(f"<{settings.SITE_URL}/unsubscribe/")
    assert f"<mailto:{settings.EMAIL_UNSUBSCRIBE_MAILTO}>" in unsubscribe
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Id"] == settings.EMAIL_LIST_ID
    assert headers["Message-ID"].endswith(f"@{settings.EMAIL_MESSAGE_ID_DOMAIN}>")


def test_digest_has_a_text_and_an_inlined_html_part(mailoutbox):
    message, subscriber = sent_digest(mailoutbox, interests="diffusion models")
    html = html_part(message)
    assert "Denoising diffusion models" in message.body
    assert "matches your interests: diffusion models" in message.body
    assert "<table" not in message.body
    assert 'style="' in html  # CSS inlined by the library
    assert "@media (prefers-color-scheme: dark)" in html  # dark mode kept
    assert "/preferences/" in html and "/unsubscribe/" in html and "/vote/" in html


def test_no_template_syntax_reaches_the_reader(mailoutbox):
    """A Django comment ``{# … #}`` spans one line only: one spread over two is sent as text."""
    message, _ = sent_digest(mailoutbox, interests="diffusion models")
    for body in (message.body, html_part(message)):
        assert not re.search(r"\{[#%{]|[#%]\}", body)


def test_hostile_titles_are_escaped_in_html_and_plain_in_text(mailoutbox):
    PaperFactory(title=HOSTILE_TITLE, upvotes=10_000)
    message, _ = sent_digest(mailoutbox, interests="")
    html = html_part(message)
    assert "<script>" not in html
    assert '&lt;script&gt;alert("x")&lt;/script&gt; &amp; &lt;b&gt;Bold&lt;/b&gt;' in html
    assert HOSTILE_TITLE in message.body
    assert "\n" not in message.subject


def test_a_title_without_spaces_wraps_inside_the_card(mailoutbox):
    """A title the width of no screen (a long identifier, a URL) breaks inside the 600px card
    instead of widening it, in clients that read only the inlined styles."""
    unbroken = "Self" + "Supervised" * 20
    PaperFactory(title=unbroken, upvotes=10_000)
    message, _ = sent_digest(mailoutbox, interests="")
    (anchor,) = re.findall(rf'<a class="title" href="[^"]*" style="([^"]*)">{unbroken}</a>', html_part(message))
    assert "overflow-wrap:anywhere" in anchor.replace(" ", "")
    assert "word-break:break-word" in anchor.replace(" ", "")


def test_the_card_is_fluid_up_to_600px_with_a_fixed_table_for_outlook(mailoutbox):
    """A phone whose mail client ignores media queries gets the card at its own width; Outlook
    on Windows, which ignores max-width, gets it inside a 600px table only it reads."""
    message, _ = sent_digest(mailoutbox, interests="")
    html = html_part(message)
    (card,) = re.findall(r'<table class="container"[^>]*>', html)
    assert 'width="100%"' in card and "max-width: 600px" in card
    assert 'width="600"' not in card
    outlook_table = r'<!--\[if mso\]><table role="presentation" width="600"[^>]*><tr><td><!\[endif\]-->'
    assert re.search(outlook_table + r'\s*<table class="container"', html)
    assert "<!--[if mso]></td></tr></table><![endif]-->" in html


def test_html_stays_under_gmail_clipping_with_twenty_long_papers(mailoutbox):
    for i in range(20):
        PaperFactory(title=f"A very long title about learning {i} " * 4, abstract="Words here. " * 300,
                     author_names=[f"Author {n}" for n in range(40)], upvotes=100 - i)
    message, _ = sent_digest(mailoutbox, interests="", max_papers=20)
    assert len(html_part(message).encode()) < 100 * 1024
    assert message.body.count("More like this:") == 20


def test_subject_has_the_date_and_the_top_paper_and_the_html_a_preheader(mailoutbox):
    message, _ = sent_digest(mailoutbox, interests="diffusion models, language models")
    edition = Delivery.objects.get().edition
    assert message.subject.startswith(f"Paperboy {edition.date:%a %-d %b}: ")
    assert message.subject.endswith("Denoising diffusion models for image generation")
    preheader = html_part(message).split('class="preheader"')[1].split("</div>")[0]
    assert "Also: " in preheader and "language models" in preheader


def test_a_title_written_like_an_encoded_word_reaches_the_reader_as_written(mailoutbox):
    """RFC 2047: a mail client decodes "=?utf-8?b?4oCu?=" in a Subject (here to U+202E, the
    right-to-left override ingest removes from titles): the subject must show the title as it is."""
    title = "=?utf-8?b?4oCu?= Diffusion models for protein design"
    PaperFactory(title=title, upvotes=10_000)
    message, _ = sent_digest(mailoutbox, interests="")

    shown = email.message_from_bytes(message.message().as_bytes(), policy=email.policy.default)["Subject"]

    assert "\u202e" not in shown
    assert shown.replace("\u2060", "").endswith(title)


@pytest.mark.parametrize("title, shown", [
    ("Extragradient Preference Optimization (EGPO): Beyond Last-Iterate Convergence for Nash Learning",
     "Extragradient Preference Optimization (EGPO): Beyond Last-Iterate…"),
    ("Neural networks and their training, one study among many of them: then more words",
     "Neural networks and their training, one study among many of them…"),
    ("Supercalifragilistic" * 5, ("Supercalifragilistic" * 5)[:69] + "…"),  # no space to cut at
])
def test_a_long_top_title_is_cut_in_the_subject_after_a_whole_word(title, shown):
    subject = subject_line("daily", date(2026, 12, 7), title)
    assert subject == f"Paperboy Mon 7 Dec: {shown}"
    assert len(shown) <= 70


def test_the_preheader_of_a_one_paper_digest_does_not_call_a_weekly_one_today():
    ranked = [mock.Mock(paper=mock.Mock(title="The only paper"))]
    assert preheader(ranked) == "One paper, picked for you"


def test_the_html_names_its_language_and_direction_and_each_paper_title_is_a_heading(mailoutbox):
    """A screen reader reads the email in English and jumps from paper to paper by heading."""
    message, _ = sent_digest(mailoutbox, interests="")
    html = html_part(message)
    assert re.search(r'<html lang="en" dir="ltr"', html)
    headings = re.findall(r'<h2[^>]*><a class="title"[^>]*>([^<]+)</a></h2>', html)
    assert headings and len(headings) == html.count('class="title"')
    assert headings[0] in message.subject


def test_each_paper_has_authors_organisation_signal_summary_links_and_votes(mailoutbox):
    PaperFactory(
        title="Sparse mixtures of diffusion experts",
        author_names=["Ada Lovelace", "Alan Turing", "Grace Hopper", "Katherine Johnson"],
        organization="Analytical Engines Lab", upvotes=57, num_comments=3,
        ai_summary="A short AI summary of the mixture.",
        abstract="A long abstract that should not be shown. " * 20,
        hf_url="https://huggingface.co/papers/2611.99999", code_url="https://github.com/example/moe",
    )
    message, _ = sent_digest(mailoutbox, interests="diffusion")
    html, text = html_part(message), message.body
    for part in (" ".join(html.split()), " ".join(text.split())):
        assert "Ada Lovelace, Alan Turing, Grace Hopper et al." in part
        assert "Analytical Engines Lab" in part
        assert "57 upvotes" in part and "3 comments" in part
        assert "A short AI summary of the mixture." in part
        assert "should not be shown" not in part
        assert "https://huggingface.co/papers/2611.99999" in part and "https://github.com/example/moe" in part
        assert "https://arxiv.org/abs/" in part and "https://arxiv.org/pdf/" in part
    assert html.count("/up/") == html.count("/down/") == len(message.body.split("More like this:")) - 1


def test_the_abstract_is_cut_at_a_sentence_when_there_is_no_ai_summary():
    paper = PaperFactory.build(ai_summary="", abstract="First sentence here. " * 10 + "Second part " * 40)
    summary = short_summary(paper)
    assert summary.endswith("here.") and len(summary) <= 320


@pytest.mark.parametrize("abbreviated", [
    "priors based on e.g. Handcrafted signals", "priors based on e.g. handcrafted signals",
    "as in Smith et al. Their method", "the ratio (i.e. Precision over recall)", "as shown in Fig. 3 here",
])
def test_the_abstract_is_not_cut_after_an_abbreviation(abbreviated):
    first = "We study how priors shape learned representations of audio. " * 3
    too_long = f"Earlier work used {abbreviated} " + "and more words " * 12 + "alone."
    paper = PaperFactory.build(ai_summary="", abstract=first + too_long)
    assert short_summary(paper) == first.strip()


def test_sentences_end_after_a_full_stop_a_closing_quote_or_bracket_but_not_an_abbreviation():
    text = ('It holds. 42 runs agree! Why? "Quoted." (Bracketed.) We propose tpSGD. tpSGD learns '
            "e.g. faster, cf. Fig. 2, w.r.t. loss, as Smith et al. Show.")
    assert sentences(text) == [
        "It holds.", "42 runs agree!", "Why?", '"Quoted."', "(Bracketed.)", "We propose tpSGD.",
        "tpSGD learns e.g. faster, cf. Fig. 2, w.r.t. loss, as Smith et al. Show.",
    ]


def test_footer_links_preferences_unsubscribe_browser_feed_and_postal_line(mailoutbox, settings):
    message, subscriber = sent_digest(mailoutbox, interests="")
    for part in (" ".join(html_part(message).split()), " ".join(message.body.split())):
        assert "/preferences/" in part and "/unsubscribe/" in part and "/d/" in part and "/feed/" in part
        assert settings.EMAIL_POSTAL_ADDRESS in part and settings.CONTACT_EMAIL in part
        assert f"subscribed to Paperboy with {subscriber.email}" in part


def test_plain_text_part_is_its_own_template_not_stripped_html(mailoutbox):
    message, _ = sent_digest(mailoutbox, interests="")
    assert "<a " not in message.body and "&amp;" not in message.body
    assert message.body.startswith("Paperboy · Daily digest")
    long_lines = [line for line in message.body.splitlines() if len(line) > 72 and "http" not in line]
    assert long_lines == []


def test_paper_blocks_are_rendered_once_per_edition_for_all_readers():
    edition = built_edition(papers=papers_on_topics())
    readers = SubscriberFactory.create_batch(3, interests="")
    renderer = DigestRenderer(edition)
    block_template = renderer.templates["digest_paper.html"]
    ranked = EditionRanker(list(edition.entries.select_related("paper"))).rank_for(readers[0])

    with mock.patch.object(block_template, "render", wraps=block_template.render) as render_block:
        digests = [renderer.render(reader, ranked) for reader in readers]

    assert render_block.call_count == len(ranked)
    assert len({d.html for d in digests}) == 3  # still each reader's own email
    assert all(reader.email in d.html for reader, d in zip(readers, digests))


def test_a_paper_without_links_has_no_empty_links_block(mailoutbox):
    PaperFactory(title="A paper from the bundled corpus", arxiv_id="", arxiv_url="", pdf_url="", upvotes=500)
    message, _ = sent_digest(mailoutbox, interests="", max_papers=20)
    html = html_part(message)
    item = html.split("A paper from the bundled corpus")[1].split("More like this")[0]
    assert 'class="links"' not in item
    assert html.count('class="links"') == html.count("arxiv.org/pdf/") > 0


def test_a_paper_without_abstract_or_summary_has_no_empty_summary(mailoutbox):
    PaperFactory(title="A paper known by its title alone", abstract="", ai_summary="", upvotes=10_000)
    message, _ = sent_digest(mailoutbox, interests="")
    item = html_part(message).split("A paper known by its title alone")[1].split("More like this")[0]
    assert 'class="summary"' not in item
    lines = message.body.split("A paper known by its title alone\n")[1].splitlines()
    assert lines[0].endswith("▲ 10000 upvotes") and lines[1].startswith("    arXiv: https://arxiv.org/abs/")


def test_the_text_items_line_up_under_their_ranks_past_nine(mailoutbox):
    for i in range(12):
        PaperFactory(title=f"Trending paper number {i}", upvotes=200 - i)
    message, _ = sent_digest(mailoutbox, interests="", max_papers=20)
    lines = message.body.splitlines()
    ranked = [line for line in lines if line[:4].strip().rstrip(".").isdigit() and line[2:4] == ". "]
    assert [line[:4] for line in ranked[:10]] == [f"{n:>2}. " for n in range(1, 11)]
    title_at = {line[4:] for line in ranked}
    for number, line in enumerate(lines):
        if line in ranked:
            following = lines[number + 1]
            assert following.startswith("    ") and not following.startswith("     "), following
    assert all(line.startswith("    More like this: ") for line in lines if "More like this" in line)
    assert len(title_at) == len(ranked)


def test_a_long_title_is_wrapped_in_the_text_part_under_its_rank(mailoutbox):
    title = "Scaling laws for sparse mixture of experts language models under compute optimal training " * 2
    PaperFactory(title=title.strip(), upvotes=10_000)
    message, _ = sent_digest(mailoutbox, interests="")
    lines = message.body.splitlines()
    first = next(n for n, line in enumerate(lines) if line.startswith(" 1. "))
    wrapped = lines[first:first + 3]
    assert all(len(line) <= 72 for line in wrapped), wrapped
    assert all(line.startswith("    ") and not line.startswith("     ") for line in wrapped[1:]), wrapped
    assert " ".join(line.strip() for line in wrapped).removeprefix("1. ") == title.strip()


def css_rules(css):
    """``{selector: {property: value}}`` of the plain rules in ``css``, grouped selectors split."""
    rules = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        declarations = dict(
            (name.strip(), value.replace("!important", "").strip())
            for name, value in (d.split(":", 1) for d in body.split(";") if ":" in d)
        )
        for selector in selectors.split(","):
            rules.setdefault(selector.strip(), {}).update(declarations)
    return rules


def contrast(foreground, background):
    """WCAG 2 contrast ratio of two ``#rrggbb`` colours."""
    def luminance(colour):
        channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


@pytest.mark.parametrize("template", ["emails/digest.html", "emails/subscription_layout.html"])
def test_every_text_colour_is_readable_on_the_email_in_light_and_in_dark_mode(template):
    """WCAG AA (4.5:1) for each coloured text on its background: the white card, or the
    dark one of ``prefers-color-scheme: dark``, whose rules override the light colours
    (``body`` is left out: its colour is only a default, and every text sets its own)."""
    style = get_template(template).template.source.split("<style>")[1].split("</style>")[0]
    light = css_rules(style.split("@media")[0])
    dark = css_rules(style.split("@media (prefers-color-scheme: dark) {")[1])
    for selector, declarations in light.items():
        if "color" not in declarations or selector == "body":
            continue
        for mode, overrides in (("light", {}), ("dark", dark)):
            colour = overrides.get(selector, {}).get("color", declarations["color"])
            background = declarations.get("background") or overrides.get(".container", light[".container"])["background"]
            assert contrast(colour, background) >= 4.5, (selector, mode, colour, background)
