"""The store: table metadata, engines, migrations and the data functions."""
