"""Input: the corpus metadata and audio (WAV, FLAC) headers."""
