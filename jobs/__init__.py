"""Batch work run as Ray tasks: transcoding and analytics."""
