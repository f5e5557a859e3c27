"""`python -m falbridge.sandbox --port N`."""

from falbridge.sandbox.cli import sandbox

sandbox(prog_name="python -m falbridge.sandbox")
