"""Real local services for the demo, the benchmarks, the chaos run and the tests, each a
real process. Nothing here runs in production.

- `processes`: a child in its own session with a log file (signal, kill, stop, CPU, RSS),
  and the two readiness waits: an HTTP answer (`wait_http`) and a log line (`wait_log`).
- `services`: a throwaway PostgreSQL cluster and a restartable redis-server.
- `stack`: LocalStack, the whole system on this machine (database, Redis, sandbox,
  receiver, workers, beat), and the one teardown that reaps it all.
- `demo_stack`: the demo's choices.
"""
