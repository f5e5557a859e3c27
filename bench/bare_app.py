"""The ingest baseline: a bare endpoint under the same gunicorn configuration as
`falbridge serve`. It reads the body (as the receiver does) and answers 200, nothing else."""

from flask import Flask, jsonify, request

app = Flask("falbridge-bench-bare")


@app.post("/webhooks/fal")
def bare():
    request.get_data(cache=False)
    return jsonify(received=True), 200


@app.get("/healthz")
def healthz():
    return {"ok": True}
