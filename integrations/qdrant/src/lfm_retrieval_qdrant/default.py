"""The store this package offers as the suite's default (the ``lfm_retrieval.default_store`` entry point):
Qdrant's own engine in-process (``qdrant+edge://``, with the ``edge`` extra), a folder and no server."""

#: ``open_store()`` without a URI, and the CLI without ``--store``, fill in the folder and the collection.
EMBEDDED_URI = "qdrant+edge://{folder}/{collection}"
