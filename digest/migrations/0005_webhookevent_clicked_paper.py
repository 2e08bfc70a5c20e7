from itertools import islice

import django.db.models.deletion
from django.db import migrations, models

LINK_FIELDS = ("arxiv_url", "pdf_url", "hf_url", "code_url", "project_url")


def comparable(url):
    return str(url or "").strip().rstrip("/")


def clicked_paper_id(wanted, paper_ids, papers):
    """The first of the digest's papers with a link equal to the clicked one, or None."""
    for paper_id in paper_ids:
        paper = papers.get(paper_id)
        if paper is not None and any(comparable(getattr(paper, name)) == wanted for name in LINK_FIELDS
                                     if getattr(paper, name)):
            return paper_id
    return None


def record_clicked_papers(apps, schema_editor, batch_size=2000):
    """Click events applied before this migration: the paper of their digest whose link was
    clicked, as ``digest.webhooks.clicked_paper`` finds it (written out here, as it is now).

    ``batch_size`` events at a time: one read of their papers and one update per batch,
    so a ledger of millions of clicks migrates in thousands of queries, not millions.
    """
    WebhookEvent = apps.get_model("digest", "WebhookEvent")
    Paper = apps.get_model("papers", "Paper")
    events = (
        WebhookEvent.objects.filter(
            event_type="clicked", delivery__isnull=False, clicked_paper__isnull=True, details__has_key="click_url"
        )
        .select_related("delivery")
        .only("pk", "details", "delivery__paper_ids")
        .iterator(chunk_size=batch_size)
    )
    while batch := list(islice(events, batch_size)):
        wanted = [(event, url, event.delivery.paper_ids) for event in batch
                  if (url := comparable(event.details.get("click_url"))) and event.delivery.paper_ids]
        papers = Paper.objects.only(*LINK_FIELDS).in_bulk({pk for _, _, paper_ids in wanted for pk in paper_ids})
        found = []
        for event, url, paper_ids in wanted:
            event.clicked_paper_id = clicked_paper_id(url, paper_ids, papers)
            if event.clicked_paper_id is not None:
                found.append(event)
        WebhookEvent.objects.bulk_update(found, ["clicked_paper"], batch_size=batch_size)


class Migration(migrations.Migration):

    dependencies = [
        ("digest", "0004_delivery_indexes_for_sending"),
        ("papers", "0002_paper_revised_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookevent",
            name="clicked_paper",
            field=models.ForeignKey(
                blank=True,
                help_text="For a click: the paper of the digest whose link was clicked (set when the event is applied).",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="click_events",
                to="papers.paper",
            ),
        ),
        migrations.RunPython(record_clicked_papers, migrations.RunPython.noop),
    ]
