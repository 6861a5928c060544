"""Talking to the EMR Serverless Spark API: signing, the HTTP client, discovery."""
