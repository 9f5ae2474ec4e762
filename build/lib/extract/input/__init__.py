"""Input: the corpus metadata and WAV headers."""
