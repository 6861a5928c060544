"""harvester: keeps a complete, queryable history of Livy Gateway sessions."""

__version__ = "0.1.0"
