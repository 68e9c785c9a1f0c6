"""How routers and warmers authenticate to pools: secret references, their resolution,
and the credentials (headers, TLS contexts) presented on every call.

`refs` parses references (never secrets) as pool documents carry them, `sources` fetches
what a reference names (environment, file, AWS Secrets Manager, GCP Secret Manager,
Kubernetes API), `resolver` caches resolved secrets with a TTL so rotation needs no restart,
`tls` builds client TLS contexts from PEM, and `present` turns a pool's `auth` and `tls`
into what one call carries.
"""
