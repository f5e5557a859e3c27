"""Real local services for the demo, the benchmarks, the chaos run and the tests: a
throwaway PostgreSQL cluster, Redis, and falbridge's own processes. Nothing here runs in
production."""
