"""GPU kernels (Triton), importable as extract.kernels."""
