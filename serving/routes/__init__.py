"""The API's routes, one module per resource; `serving.app` mounts them all under `/v1`."""
