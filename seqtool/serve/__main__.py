"""`python -m seqtool.serve`: the server is the command `seqtool serve` (the command line
stands above this package, so this module names it rather than importing it)."""

import sys

print("Error: run the server as `seqtool serve` (or `python -m seqtool.cli serve`)",
      file=sys.stderr)
sys.exit(2)
