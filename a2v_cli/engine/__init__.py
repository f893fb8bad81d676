"""The renderer: audio in, lip-synced avatar video and alpha mask out. Knows nothing of the terminal."""
