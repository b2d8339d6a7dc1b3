"""Browser tests of the dashboard (headless Chromium from the system packages)."""
