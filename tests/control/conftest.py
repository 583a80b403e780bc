from tests.control.fixtures import local, quiet_structlog

__all__ = ["local", "quiet_structlog"]
