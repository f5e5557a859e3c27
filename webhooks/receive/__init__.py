"""Receive fal's callbacks: verify the signature (verify, with fal's keys from jwks), store
the delivery in the inbox (falbridge.models.inbox) before answering, and enqueue its
application (view)."""
