"""Indexing product catalogs: sources, templates, the incremental job, progress."""

from lfm_retrieval.catalog.job import CatalogJob, Summary, fingerprint
from lfm_retrieval.catalog.sources import SourceRow, read_source
from lfm_retrieval.catalog.template import Template

__all__ = ["CatalogJob", "SourceRow", "Summary", "Template", "fingerprint", "read_source"]
