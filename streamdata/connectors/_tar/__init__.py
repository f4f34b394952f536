"""Tar streams: counting, splitting and filtering the archives that carry trees."""
