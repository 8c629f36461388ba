"""bundler."""
