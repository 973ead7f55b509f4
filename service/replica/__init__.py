"""The model replica runtime: a batched HorNet on one device (Serve's classifier deployment, and the bulk
job's model actors load it the same way)."""
