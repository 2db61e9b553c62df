"""The jobqueue command."""
