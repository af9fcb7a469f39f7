"""The ``updraft`` command line, built on the SDK only."""
