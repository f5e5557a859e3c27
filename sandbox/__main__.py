"""`python -m sandbox --port N`."""
from sandbox.cli import sandbox

sandbox(prog_name="python -m sandbox")
