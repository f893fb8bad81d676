"""a2v: speech to talking-avatar video, locally or against an A2V API server."""

__version__ = "0.1.0"
