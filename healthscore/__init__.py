"""The composition root: the settings object, the `healthscore` command line and the BentoML
service class. It wires the parts together; no part imports it."""
