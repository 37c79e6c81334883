"""Evidence: pre-alarm buffers of linked cameras and the clips cut from them on alarm."""
