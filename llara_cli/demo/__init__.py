"""The offline demo collection behind the quickstart: a judged known-item collection built from the Python
standard library's docstrings."""
