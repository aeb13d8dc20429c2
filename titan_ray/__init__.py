"""TitanRay: an AI trading arena on Ray."""

__version__ = "0.1.0"
