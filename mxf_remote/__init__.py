"""mxf-remote: a drop-in replacement for qmail's qmail-remote."""

__version__ = "0.1.0"
