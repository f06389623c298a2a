"""HTTP routes, one module per resource; shared dependencies in `service.api.deps`."""
