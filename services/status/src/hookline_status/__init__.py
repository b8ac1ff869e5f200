"""hookline status: projects every stream into job views; the HTTP API and metrics."""
