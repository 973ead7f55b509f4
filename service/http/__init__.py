"""The HTTP gateway runtime: the FastAPI ingress (upload, decode, auth, errors) and what sits in front of it
(Serve's proxy middleware, the HAProxy wrapper)."""
