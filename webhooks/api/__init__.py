"""The jobs API under /api: routes (jobs), request parsing (params), bearer-token auth
(auth) and the OpenAPI document (openapi)."""
