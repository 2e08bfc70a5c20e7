from django.contrib import admin

from .models import Delivery, Edition, EditionPaper, Feedback


class EditionPaperInline(admin.TabularInline):
    model = EditionPaper
    fields = ["rank", "paper", "trending_score", "trending_reason", "pulled"]
    readonly_fields = ["rank", "paper", "trending_score", "trending_reason"]
    extra = 0
    can_delete = False


@admin.register(Edition)
class EditionAdmin(admin.ModelAdmin):
    list_display = ["date", "cadence", "built_at"]
    list_filter = ["cadence"]
    date_hierarchy = "date"
    inlines = [EditionPaperInline]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["edition", "subscriber", "status", "sent_at", "attempts", "reason"]
    list_filter = ["status", "edition__cadence", "edition__date"]
    search_fields = ["subscriber__email", "esp_message_id"]
    raw_id_fields = ["subscriber", "edition"]
    readonly_fields = [f.name for f in Delivery._meta.fields]


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ["subscriber", "paper", "vote", "created_at"]
    list_filter = ["vote"]
    raw_id_fields = ["subscriber", "paper"]
