"""Storage infrastructure every package uses: atomic writes and line readers (``files``), lock files
(``locks``) and the output guard (``outputs``)."""
