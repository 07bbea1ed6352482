"""The ``coafi`` command line."""
