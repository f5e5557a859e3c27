"""Benchmarks and the chaos run (`make chaos`); not part of the installed package."""
