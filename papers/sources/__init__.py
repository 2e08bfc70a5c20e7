"""Paper sources: one small module per source, one interface (``base.Source``)."""

from importlib import import_module

from .base import SourceError

SOURCE_CLASSES = {
    "hf": "papers.sources.huggingface.HuggingFaceApiSource",
    "arxiv": "papers.sources.arxiv.ArxivApiSource",
    "arxiv-rss": "papers.sources.arxiv.ArxivRssSource",
    "hf-html": "papers.sources.huggingface.HuggingFacePageSource",
    "bundled": "papers.sources.bundled.BundledSource",
}


def source_names():
    return list(SOURCE_CLASSES)


def get_source(name):
    """An instance of the source called ``name``; SourceError for an unknown name."""
    try:
        path = SOURCE_CLASSES[name]
    except KeyError:
        raise SourceError(
            name, f"unknown source; choose from {', '.join(SOURCE_CLASSES)}"
        ) from None
    module, _, cls = path.rpartition(".")
    return getattr(import_module(module), cls)()


__all__ = ["SourceError", "get_source", "source_names"]
