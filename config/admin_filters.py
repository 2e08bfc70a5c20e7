"""An admin list filter for the rows of one related row, chosen by id in the URL."""

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters


class OneRowFilter(admin.SimpleListFilter):
    """The rows of one reader, paper or author (``?<parameter_name>=<id>``, what the related
    pages link to), named in the sidebar. It offers no list to pick from: there may be
    hundreds of thousands. Subclasses set ``related_model`` and ``rows_of``."""

    related_model = None
    name_missing = True  # a row that does not exist is named "no <title> <id>"; else not offered

    def lookups(self, request, model_admin):
        chosen = self.chosen_id()
        if chosen is None:
            return []
        row = self.related_model.objects.filter(pk=chosen).first()
        if row is None:
            return [(str(chosen), f"no {self.title} {chosen}")] if self.name_missing else []
        return [(str(chosen), str(row))]

    def queryset(self, request, queryset):
        chosen = self.chosen_id()
        return queryset if chosen is None else self.rows_of(queryset, chosen)

    def rows_of(self, queryset, chosen):
        raise NotImplementedError

    def chosen_id(self):
        value = self.value()
        if value is None:
            return None
        if not (value.isascii() and value.isdigit()):
            raise IncorrectLookupParameters(f"not a {self.title} id: {value!r}")
        return int(value)
