"""A local emulator of fal.ai's queue API, for tests and demos.

It speaks fal's wire protocol over plain HTTP (docs/fal-protocol.md): submit /
status / result / cancel under `/{owner}/{app}/requests/{id}`, Ed25519-signed webhooks
with fal's headers and a JWKS at `/.well-known/jwks.json`, fake `fal-ai/evf-sam` and
`fal-ai/florence-2-large/region-proposal` models (real PNG outputs served from
`/files/...`), an echo model for every other endpoint, injectable faults reproducible
from a seed, and an admin API under `/_sandbox/` exposing the ground truth.

Deliberate differences from real fal:
- plain HTTP on loopback; webhooks may target loopback/private addresses and input
  images may be fetched from them (real fal refuses both);
- status/result/cancel URLs with the full endpoint path (e.g.
  `fal-ai/florence-2-large/region-proposal/requests/{id}/status`) answer 404 unless
  `accept_full_path_urls` is set: the documented form is owner/app only;
- the result GET before completion answers 400 "Request is still in progress"
  (undocumented on fal); a cancelled request ends COMPLETED with a 499
  `client_cancelled` error and still gets an ERROR webhook (configurable);
- no streaming status, no server-side retries of failed runs; timings are scaled down;
- `Retry-After` may carry fractional seconds so tests stay fast.

Start it in-process with `sandbox.server.SandboxServer`, or run `python -m falbridge.sandbox`.
The package speaks only HTTP and imports nothing from the rest of the project.
"""

from falbridge.sandbox.config import Faults, SandboxConfig
from falbridge.sandbox.server import SandboxServer

__all__ = ["Faults", "SandboxConfig", "SandboxServer"]
