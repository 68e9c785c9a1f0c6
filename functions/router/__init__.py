"""The router function: the HTTP front door (Open Inference Protocol v2 and OpenAI routes).

One request pipeline (`pipeline`) in front of the forwarding routes (`hotpath`) and the
framework routes (`api`); `asgi.create_app` assembles them over a `runtime`. Entry points:
`app` (uvicorn, Cloud Run, containers) and `lambda_handler` (AWS Lambda via Mangum).
Routing decisions live in `mpfn.routing`; nothing is imported here eagerly, so importing a
submodule pays only for what it uses.
"""
