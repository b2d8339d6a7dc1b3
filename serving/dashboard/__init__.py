"""The CSM dashboard, served at `/` by the same service as the API (`serving.dashboard.app`)."""
