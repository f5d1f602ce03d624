"""Indexing product catalogs: sources, templates, the incremental job on a local or Ray engine, progress."""

from lfm_retrieval.catalog.engines import LocalEngine
from lfm_retrieval.catalog.job import CatalogJob
from lfm_retrieval.catalog.prepare import fingerprint
from lfm_retrieval.catalog.sources import SourceRow, read_source
from lfm_retrieval.catalog.summary import Summary
from lfm_retrieval.catalog.template import Template

__all__ = ["CatalogJob", "LocalEngine", "SourceRow", "Summary", "Template", "fingerprint", "read_source"]
