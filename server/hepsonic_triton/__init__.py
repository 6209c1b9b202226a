"""hepsonic_triton: run the real NVIDIA Triton server on the hepsonic model repository."""
