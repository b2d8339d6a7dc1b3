"""HealthScore serving: the service's state and resources, explanations, the score store,
events and alerts, and the commands of the rules score and the service. Importing this package
must not import BentoML: the commands use it without a server, and the BentoML service class
lives in `healthscore.service`.
"""
