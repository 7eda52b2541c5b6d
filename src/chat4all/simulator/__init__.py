"""Local simulators of the providers' documented APIs, for tests and ``make run``."""
