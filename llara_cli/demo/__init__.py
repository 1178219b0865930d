"""The offline demo collection behind ``llara demo-collection`` and the quickstart: a judged known-item
collection built from the Python standard library's docstrings."""
