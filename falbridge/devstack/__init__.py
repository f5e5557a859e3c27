"""Real local services for the demo, the benchmarks, the chaos run and the tests, each a
real process. Nothing here runs in production.

- `processes`: a child in its own session with a log file (signal, kill, stop, CPU, RSS),
  and the two readiness waits: an HTTP answer (`wait_http`) and a log line (`wait_log`).
- `services`: a throwaway PostgreSQL cluster and a restartable redis-server.
- `proxy`: nginx in front of a receiver, from `nginx.conf.template`, the template
  docker-compose runs in production.
- `stack`: LocalStack, the whole system on this machine (database, Redis, sandbox,
  receiver, the nginx in front of it, workers, beat), and the one teardown that reaps it all.
- `demo_stack`: the demo's choices.
"""
