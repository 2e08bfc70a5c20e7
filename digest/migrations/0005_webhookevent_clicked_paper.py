import django.db.models.deletion
from django.db import migrations, models

LINK_FIELDS = ("arxiv_url", "pdf_url", "hf_url", "code_url", "project_url")


def comparable(url):
    return str(url or "").strip().rstrip("/")


def record_clicked_papers(apps, schema_editor):
    """Click events applied before this migration: the paper of their digest whose link was
    clicked, as ``digest.webhooks.clicked_paper`` finds it (written out here, as it is now)."""
    WebhookEvent = apps.get_model("digest", "WebhookEvent")
    Paper = apps.get_model("papers", "Paper")
    events = WebhookEvent.objects.filter(
        event_type="clicked", delivery__isnull=False, clicked_paper__isnull=True, details__has_key="click_url"
    ).select_related("delivery")
    for event in events.iterator(chunk_size=2000):
        wanted, paper_ids = comparable(event.details.get("click_url")), event.delivery.paper_ids or []
        if not wanted or not paper_ids:
            continue
        papers = Paper.objects.only(*LINK_FIELDS).in_bulk(paper_ids)
        for paper_id in paper_ids:
            paper = papers.get(paper_id)
            if paper is not None and any(comparable(getattr(paper, name)) == wanted for name in LINK_FIELDS
                                         if getattr(paper, name)):
                WebhookEvent.objects.filter(pk=event.pk).update(clicked_paper=paper)
                break


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
