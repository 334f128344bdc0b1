"""Small HTTP doubles of cloud REST APIs, driven only through the real SDKs."""
