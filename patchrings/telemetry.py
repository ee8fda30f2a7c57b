"""Structured logs and Application Insights (issue 9). Being built."""


def configure() -> None:
    """Set up logging / tracing once per worker process."""
