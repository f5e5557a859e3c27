"""`python -m falbridge`, the same as the `falbridge` console script."""

from falbridge.cli import main

main(prog_name="falbridge")
