"""Download files on falbridge's own behalf: result files fal's CDN will not keep forever,
through a fetcher that refuses to be a proxy into the network it runs in (SSRF)."""
