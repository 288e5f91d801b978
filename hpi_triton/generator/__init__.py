"""Building a verified Triton model repository from PaddleX model directories."""
