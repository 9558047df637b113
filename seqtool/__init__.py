"""seqtool: learn from text sequences with recurrent networks."""

__version__ = "0.1.0"
