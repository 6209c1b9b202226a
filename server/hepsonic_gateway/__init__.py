"""hepsonic_gateway: the KServe-v2 front door (HTTP + gRPC) in front of Triton pools."""
