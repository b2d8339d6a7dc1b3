"""The service: API, auth, events and webhooks, the store, the server process."""
