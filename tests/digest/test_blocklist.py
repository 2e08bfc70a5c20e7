"""The paper blocklist: a block pulls a paper from every edition, un-blocking puts back what it pulled."""

import pytest

from digest.models import BlockedPaper, Delivery, EditionPaper
from digest.sending import prepare_edition, send_edition_to
from digest.services import block_paper, unblock_paper
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


def daily_and_weekly():
    """A daily and a weekly edition of the same papers, and the top paper."""
    daily = built_edition("daily")
    weekly = built_edition("weekly", papers=[])
    top = daily.entries.get(rank=1).paper
    assert weekly.entries.filter(paper=top).exists()
    return daily, weekly, top


def entry(edition, paper):
    return EditionPaper.objects.get(edition=edition, paper=paper)


def test_unblocking_puts_the_paper_back_in_every_edition_its_block_pulled_it_from():
    daily, weekly, top = daily_and_weekly()
    blocked = block_paper(top, "looked retracted")

    unblock_paper(blocked)

    assert not BlockedPaper.objects.exists()
    assert not entry(daily, top).pulled and not entry(weekly, top).pulled


def test_unblocking_leaves_pulled_an_entry_an_operator_pulled_by_hand_before_the_block():
    daily, weekly, top = daily_and_weekly()
    EditionPaper.objects.filter(edition=weekly, paper=top).update(pulled=True)
    blocked = block_paper(top)

    unblock_paper(blocked)

    assert blocked.pulled_entries == [entry(daily, top).pk]
    assert not entry(daily, top).pulled and entry(weekly, top).pulled


def test_blocking_a_blocked_paper_again_keeps_the_record_of_what_the_block_pulled():
    daily, weekly, top = daily_and_weekly()
    block_paper(top)

    again = block_paper(top, "still retracted")
    unblock_paper(again)

    assert not entry(daily, top).pulled and not entry(weekly, top).pulled


def test_unblocking_a_block_made_before_its_entries_were_recorded_puts_nothing_back():
    daily, weekly, top = daily_and_weekly()
    blocked = block_paper(top)
    BlockedPaper.objects.filter(pk=blocked.pk).update(pulled_entries=None)
    blocked.refresh_from_db()

    unblock_paper(blocked)

    assert not BlockedPaper.objects.exists()
    assert entry(daily, top).pulled and entry(weekly, top).pulled


def test_a_paper_unblocked_before_the_send_is_in_the_digests_sent_after(mailoutbox):
    edition = built_edition()
    top = edition.entries.get(rank=1).paper
    before, after = SubscriberFactory(interests="", max_papers=20), SubscriberFactory(interests="", max_papers=20)
    blocked = block_paper(top, "looked retracted")
    send_edition_to(edition, [before.pk])
    prepared_while_blocked = prepare_edition(edition)

    unblock_paper(blocked)
    send_edition_to(edition, [after.pk])

    assert top.pk not in prepared_while_blocked.ranker.index
    assert top.pk not in Delivery.objects.get(subscriber=before).paper_ids
    assert top.pk in Delivery.objects.get(subscriber=after).paper_ids
    assert top.title in mailoutbox[1].body
