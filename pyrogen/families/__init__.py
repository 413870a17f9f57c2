"""Registry entries, one module per model family (discovered by
:func:`pyrogen.registry.load_families`)."""
