"""`python -m seqtool.serve`: the same command as `seqtool serve`."""

from seqtool.cli.serve import serve

serve.main(prog_name="python -m seqtool.serve")
