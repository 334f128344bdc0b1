"""failover: keep a web service reachable when the company hosting it cuts it off."""

__version__ = "0.1.0"
