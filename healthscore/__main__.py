"""`python -m healthscore ...`, and the file spark-submit runs (it needs a .py file)."""

from healthscore.cli import app

app()
