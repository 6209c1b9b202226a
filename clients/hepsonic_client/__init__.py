"""hepsonic_client: thin client for reconstruction jobs."""
