"""hookline: GitHub webhooks in, pipeline jobs out, over Redis Streams."""

__version__ = "0.1.0"
